// Dawn's Node bindings learn that GPU work finished (onSubmittedWorkDone, mapAsync, popErrorScope)
// by calling the instance's ProcessEvents from a `setImmediate` callback that re-queues itself
// while any promise is pending: a busy loop on the JS thread for as long as the GPU works. On a
// software adapter the "GPU" is the CPU: on this project's 2-core machine the loop took one core
// from lavapipe's threads (loading the mid preset: main thread 7.6 s of CPU, 3.4 s with this).
//
// The bindings look `setImmediate` up on the global object at each call, so a wrapper can tell
// their poll (an anonymous native function with no arguments; nothing else in Node passes one)
// from everyone else's callbacks, which keep the real setImmediate. Their poll runs immediately
// for the first millisecond of a wait (short waits keep their latency), then once per millisecond.

/** a wait's first polls run back to back for this long */
const SPIN_MS = 1;

let installed = false;

function isBindingPoll(fn: unknown, args: unknown[]): fn is () => void {
  return typeof fn === 'function' && args.length === 0 && fn.name === '' && Function.prototype.toString.call(fn).includes('[native code]');
}

/** Throttle the Dawn bindings' event polling (Node only; idempotent). */
export function throttleDawnPolling(): void {
  if (installed || typeof globalThis.setImmediate !== 'function') return;
  installed = true;
  const immediate = globalThis.setImmediate;
  // a poll requested from inside a poll continues the same wait; any other starts a new one
  let inPoll = false;
  let waitStart = 0;
  const poll = (fn: () => void) => (): void => {
    inPoll = true;
    try {
      fn();
    } finally {
      inPoll = false;
    }
  };
  const wrapped = (fn: (...a: unknown[]) => void, ...args: unknown[]): unknown => {
    if (!isBindingPoll(fn, args)) return immediate(fn, ...args);
    const now = performance.now();
    if (!inPoll) waitStart = now;
    return now - waitStart < SPIN_MS ? immediate(poll(fn)) : setTimeout(poll(fn), 1);
  };
  globalThis.setImmediate = Object.assign(wrapped, immediate) as typeof setImmediate;
}
