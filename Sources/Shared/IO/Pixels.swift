// The one mapping between stored pixel levels and tensor values, used by every
// image reader (PNG, IDX, raw) and writer (to-png grids):
//   in:  x = p / maxValue * 2 - 1          (p in 0 ... maxValue -> x in [-1, 1])
//   out: p = round((clamp(x, -1, 1) + 1) / 2 * maxValue)   (PNG.quantize)

public enum Pixels {
    /// x = p / maxValue * 2 - 1 (255 for 8-bit, 65535 for 16-bit).
    @inline(__always)
    public static func unit(_ p: Float, maxValue: Float) -> Float { p / maxValue * 2 - 1 }
}
