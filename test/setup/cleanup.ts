// Every test file runs with this: what the fixtures (test/helpers/cleanup.ts) made outside a test
// — in a beforeAll, a describe's body, at the top of the file — is stopped and removed in an
// afterAll of the file. A setup file, because one worker runs many test files and loads the
// helpers once (isolate: false): a setup file is run again for each file, a helper module is not.
import { drainEachFile } from '../helpers/cleanup.js';

drainEachFile();
