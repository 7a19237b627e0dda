// OpenAI's `stop` sequences over streamed text: the answer ends where the first of them completes,
// cut before it (the stop text itself is never sent), wherever the pieces happen to split. While a piece's tail could still grow into a stop
// sequence it is held back; it goes out once the next piece rules that out, or at the end.

export class StopText {
  private held = '';
  stopped = false;

  constructor(private readonly stops: readonly string[]) {}

  /** The text that is safe to send after `piece`; sets `stopped` when a stop sequence appears. */
  push(piece: string): string {
    if (this.stopped) return '';
    const text = this.held + piece;
    // the stop sequence that completes first (generation would have stopped there), the longer on a tie
    let cut = -1;
    let end = Infinity;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (i + s.length < end || (i + s.length === end && i < cut))) [cut, end] = [i, i + s.length];
    }
    if (cut >= 0) {
      this.stopped = true;
      this.held = '';
      return text.slice(0, cut);
    }
    const keep = this.longestPartialStop(text);
    this.held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  /** What is still held back when generation ends without a stop sequence. */
  flush(): string {
    const rest = this.held;
    this.held = '';
    return this.stopped ? '' : rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of a stop sequence. */
  private longestPartialStop(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
        if (text.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
