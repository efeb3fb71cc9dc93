// Every test file runs with this: what a test spawns does not parse the machine's extra CA bundle
// at start-up (test/helpers/extra-ca-certs.ts says why, and who gets it back).
import { keepExtraCaCertsAside } from '../helpers/extra-ca-certs.js';

keepExtraCaCertsAside();
