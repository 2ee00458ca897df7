/** Small UTF-8 helpers shared by the tokenizers. */

const encoder = new TextEncoder();
const lenientDecoder = new TextDecoder('utf-8');

/** UTF-8 bytes of one code point. */
export function codePointBytes(cp: number): number[] {
  if (cp < 0x80) return [cp];
  if (cp < 0x800) return [0xc0 | (cp >> 6), 0x80 | (cp & 0x3f)];
  if (cp >= 0xd800 && cp <= 0xdfff) return [0xef, 0xbf, 0xbd]; // lone surrogate: U+FFFD, as TextEncoder does
  if (cp < 0x10000) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
}

/** Bytes as a "binary" string (one char per byte, code 0..255), for exact byte-wise map keys. */
export function bytesToBinary(bytes: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

export function utf8Encode(s: string): Uint8Array {
  return encoder.encode(s);
}

/** Decode UTF-8, replacing malformed sequences with U+FFFD. */
export function utf8DecodeLenient(bytes: Uint8Array): string {
  return lenientDecoder.decode(bytes);
}

/** The byte a "<0xNN>" piece stands for, or -1. */
export function byteTokenValue(piece: string): number {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  return m ? Number.parseInt(m[1]!, 16) : -1;
}

/** A growable byte buffer. */
export class ByteBuilder {
  private buf = new Uint8Array(256);
  length = 0;
  private grow(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.length));
    this.buf = b;
  }
  push(byte: number): void {
    this.grow(1);
    this.buf[this.length++] = byte;
  }
  append(bytes: Uint8Array): void {
    this.grow(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}
