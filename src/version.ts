// Kept equal to package.json's version (a test checks it); read without touching the disk.
export const VERSION = '0.1.0';
