// NDArray {dtype, shape, data} as protos/README.md defines it: numpy dtype strings with their
// byte order ("<f4", "|u1", ...), little-endian, C order. Decoded to plain numbers here.

export type Decoded = {
  kind: "bool" | "int" | "uint" | "float" | "complex";
  shape: number[];
  // element i of the flattened array; complex values as [re, im] pairs in `imag`
  values: Float64Array;
  imag?: Float64Array;
};

const SIZES: Record<string, number> = { b: 1, i: 0, u: 0, f: 0, c: 0 };

function half(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

export function decodeArray(dtype: string, shape: number[], data: Uint8Array): Decoded {
  const order = dtype[0];
  const code = dtype[1];
  const size = Number(dtype.slice(2));
  if (!(order === "<" || order === "|") || !(code in SIZES) || !(size > 0)) {
    throw new Error(`unsupported dtype ${dtype}`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count * size) {
    throw new Error(`array of ${dtype} ${shape.join("x")} needs ${count * size} bytes, got ${data.length}`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const values = new Float64Array(count);
  let imag: Float64Array | undefined;
  const read = (offset: number, bytes: number, kind: string): number => {
    switch (kind + bytes) {
      case "b1":
      case "u1":
        return view.getUint8(offset);
      case "i1":
        return view.getInt8(offset);
      case "i2":
        return view.getInt16(offset, true);
      case "u2":
        return view.getUint16(offset, true);
      case "i4":
        return view.getInt32(offset, true);
      case "u4":
        return view.getUint32(offset, true);
      case "i8":
        return Number(view.getBigInt64(offset, true));
      case "u8":
        return Number(view.getBigUint64(offset, true));
      case "f2":
        return half(view.getUint16(offset, true));
      case "f4":
        return view.getFloat32(offset, true);
      case "f8":
        return view.getFloat64(offset, true);
    }
    throw new Error(`unsupported dtype ${dtype}`);
  };
  if (code === "c") {
    imag = new Float64Array(count);
    const part = size / 2;
    for (let i = 0; i < count; i++) {
      values[i] = read(i * size, part, "f");
      imag[i] = read(i * size + part, part, "f");
    }
  } else {
    for (let i = 0; i < count; i++) values[i] = read(i * size, size, code);
  }
  const kind = ({ b: "bool", i: "int", u: "uint", f: "float", c: "complex" } as const)[
    code as "b" | "i" | "u" | "f" | "c"
  ];
  return { kind, shape, values, imag };
}

// How an array is shown: an image (greyscale 2-d, H x W x 3/4 colour, or a flattened square of
// at least 8 x 8 values like the 64-float digits), or a table.
export type Picture = { width: number; height: number; rgba: Uint8ClampedArray<ArrayBuffer> };

export function asPicture(a: Decoded, dtype: string): Picture | null {
  if (a.kind === "complex") return null;
  let [h, w, c] = [0, 0, 1];
  if (a.shape.length === 2) [h, w] = a.shape;
  else if (a.shape.length === 3 && (a.shape[2] === 3 || a.shape[2] === 4)) [h, w, c] = a.shape;
  else if (a.shape.length === 1) {
    const side = Math.round(Math.sqrt(a.shape[0]));
    if (side < 8 || side * side !== a.shape[0]) return null;
    [h, w] = [side, side];
  } else return null;
  if (!h || !w) return null;
  const v = a.values;
  let scale = (x: number) => x;
  if (a.kind === "bool") scale = (x) => x * 255;
  else if (dtype !== "|u1") {
    let lo = Infinity;
    let hi = -Infinity;
    for (const x of v) {
      if (Number.isFinite(x)) {
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
    }
    if (c > 1 && lo >= 0 && hi <= 1) scale = (x) => x * 255; // colour floats in [0, 1]
    else {
      const k = hi > lo ? 255 / (hi - lo) : 0;
      scale = (x) => (Number.isFinite(x) ? (x - lo) * k : 0);
    }
  }
  const rgba = new Uint8ClampedArray(h * w * 4);
  for (let p = 0; p < h * w; p++) {
    if (c === 1) {
      const g = scale(v[p]);
      rgba[p * 4] = rgba[p * 4 + 1] = rgba[p * 4 + 2] = g;
      rgba[p * 4 + 3] = 255;
    } else {
      rgba[p * 4] = scale(v[p * c]);
      rgba[p * 4 + 1] = scale(v[p * c + 1]);
      rgba[p * 4 + 2] = scale(v[p * c + 2]);
      rgba[p * 4 + 3] = c === 4 ? scale(v[p * c + 3]) : 255;
    }
  }
  return { width: w, height: h, rgba };
}

export function formatValue(a: Decoded, i: number): string {
  if (a.kind === "bool") return a.values[i] ? "true" : "false";
  if (a.kind === "complex") {
    const im = a.imag![i];
    return `${fmt(a.values[i])}${im < 0 ? "-" : "+"}${fmt(Math.abs(im))}j`;
  }
  return a.kind === "float" ? fmt(a.values[i]) : String(a.values[i]);
}

function fmt(x: number): string {
  return Number.isInteger(x) ? x.toFixed(1) : String(Number(x.toPrecision(6)));
}
