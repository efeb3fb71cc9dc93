// How every message shows a file's permission bits: four octal digits, as chmod takes them.
// In protocol/ because the shim, which may import nothing else of ours, checks its socket too.

/** `st.mode` (or a mode we chose) as 0700-style octal, permission bits only. */
export function formatMode(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}
