/* Runs the fuzz harness over files, without libFuzzer: what npm test does with the corpus under
 * AddressSanitizer and UndefinedBehaviorSanitizer, with any C compiler that has them.
 *   replay FILE...    prints "replayed N", exits non-zero (or aborts) on a finding */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
  int replayed = 0;
  for (int k = 1; k < argc; k++) {
    FILE *f = fopen(argv[k], "rb");
    if (!f) {
      perror(argv[k]);
      return 2;
    }
    static uint8_t data[1 << 23];
    size_t size = fread(data, 1, sizeof data, f);
    fclose(f);
    LLVMFuzzerTestOneInput(data, size);
    replayed++;
  }
  printf("replayed %d\n", replayed);
  return 0;
}
