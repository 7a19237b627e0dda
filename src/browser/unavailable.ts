// Stand-in for Node-only modules in the browser bundle (Vite alias): `webgpu` (Dawn's Node
// bindings), `sharp`, `node:child_process`. The browser paths never call them (navigator.gpu,
// decode-browser.ts, video-browser.ts); reaching one is a bug, and says which.

function unavailable(what: string): never {
  throw new Error(`${what} is Node-only and not part of the browser build`);
}

export const spawn = (): never => unavailable('node:child_process');
export const create = (): never => unavailable("Dawn's Node bindings (npm 'webgpu')");
export const globals = {};
export default (): never => unavailable('sharp');
