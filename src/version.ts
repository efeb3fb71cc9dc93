// The version lives with the build id in the protocol module, which the shim may import.
export { BUILD_ID, VERSION } from './client/build-info.js';
