// A quantizing Web Worker (src/browser/quantize-threads.ts): quantize each request into its own
// buffers and send both back (transferred).

import { answerQuantizeRequest, type QuantizeRequest } from '../weights/quantize-pool.js';

self.onmessage = (ev: MessageEvent<QuantizeRequest>) => {
  const reply = answerQuantizeRequest(ev.data);
  (self as unknown as Worker).postMessage(reply, [reply.bits, reply.out]);
};
