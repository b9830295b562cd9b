// Timestep and class embeddings.
import Foundation

/// Sinusoidal timestep embedding (Vaswani et al. 2017, as used by Ho et al. 2020; diffusers'
/// get_timestep_embedding): with half = dim/2, shift s (diffusers' freq_shift, 0 by default) and
/// f_i = exp(-ln(10000) i / (half - s)), e(t) = [cos(t f_0) .. cos(t f_{half-1}), sin(t f_0) .. sin(t f_{half-1})]
/// (flip_sin_to_cos true, the default), or [sin .. | cos ..] (false: Ho et al.'s order).
/// Writes rows [t.count, dim] into out.
public func sinusoidalEmbedding(_ t: [Int], dim: Int, flipSinToCos: Bool = true, freqShift: Int = 0,
                                into out: UnsafeMutablePointer<Float>, rowStride: Int? = nil) {
    precondition(dim % 2 == 0, "sinusoid dimension must be even")
    let half = dim / 2
    precondition(half - freqShift > 0, "sinusoid: frequency shift \(freqShift) leaves no frequencies")
    let stride = rowStride ?? dim
    let (c0, s0) = flipSinToCos ? (0, half) : (half, 0)
    for (r, tv) in t.enumerated() {
        let row = out + r * stride
        for i in 0..<half {
            let f = exp(-log(10000.0) * Double(i) / Double(half - freqShift))
            let a = Double(tv) * f
            row[c0 + i] = Float(cos(a))
            row[s0 + i] = Float(sin(a))
        }
    }
}

/// Lazily filled table of sinusoidalEmbedding rows for t < limit (the same values,
/// computed once per t): the cos/sin/exp per row were a visible cost of small-net steps.
public final class SinusoidTable {
    public let dim: Int
    public let flipSinToCos: Bool, freqShift: Int
    let limit = 1 << 14
    var table: [Float]
    var filled: [Bool]

    public init(dim: Int, flipSinToCos: Bool = true, freqShift: Int = 0) {
        self.dim = dim; self.flipSinToCos = flipSinToCos; self.freqShift = freqShift
        table = []
        filled = []
    }

    /// Writes e(t) for each t into rows of `out` (row stride `rowStride`).
    public func fill(_ t: [Int], into out: UnsafeMutablePointer<Float>, rowStride: Int? = nil) {
        let stride = rowStride ?? dim
        if table.isEmpty {
            table = [Float](repeating: 0, count: limit * dim)
            filled = [Bool](repeating: false, count: limit)
        }
        for (r, tv) in t.enumerated() {
            if tv >= 0 && tv < limit {
                if !filled[tv] {
                    table.withUnsafeMutableBufferPointer {
                        sinusoidalEmbedding([tv], dim: dim, flipSinToCos: flipSinToCos, freqShift: freqShift, into: $0.baseAddress! + tv * dim)
                    }
                    filled[tv] = true
                }
                table.withUnsafeBufferPointer { (out + r * stride).update(from: $0.baseAddress! + tv * dim, count: dim) }
            } else {
                sinusoidalEmbedding([tv], dim: dim, flipSinToCos: flipSinToCos, freqShift: freqShift, into: out + r * stride)
            }
        }
    }
}

/// temb = Linear2(SiLU(Linear1(sinusoid(t)))) (diffusers TimestepEmbedding: no activation after Linear2).
public final class TimeEmbedding {
    public let sinusoidDim: Int
    public let dim: Int
    let linear1: Linear
    let act = SiLU()
    let linear2: Linear
    let sinusoid = Buffer()
    let table: SinusoidTable

    public init(_ name: String, sinusoidDim: Int, dim: Int, flipSinToCos: Bool = true, freqShift: Int = 0,
                _ f: ParameterFactory) {
        self.sinusoidDim = sinusoidDim
        self.dim = dim
        table = SinusoidTable(dim: sinusoidDim, flipSinToCos: flipSinToCos, freqShift: freqShift)
        linear1 = Linear(name + ".linear_1", sinusoidDim, dim, f)
        linear2 = Linear(name + ".linear_2", dim, dim, f)
    }

    public var parameters: [Parameter] { linear1.parameters + linear2.parameters }

    /// Returns [t.count, dim] (the layer's own buffer).
    public func forward(_ t: [Int]) -> UnsafeMutablePointer<Float> {
        let e = sinusoid.ensure(t.count * sinusoidDim)
        table.fill(t, into: e)
        let h = linear1.forward(e, rows: t.count)
        let a = act.forward(h, count: t.count * dim)
        return linear2.forward(a, rows: t.count)
    }

    /// Backward from d temb (t has no gradient).
    public func backward(_ dy: UnsafePointer<Float>) {
        let da = linear2.backward(dy)!
        let dh = act.backward(da)
        linear1.backward(dh, inputGrad: false)
    }
}

/// Class embedding table with `classes` rows plus one null class (row `classes`),
/// used for classifier-free guidance. forward adds table[y] to each row of h.
public final class ClassEmbedding {
    public let classes: Int
    public let dim: Int
    public let table: Parameter
    var labels: [Int] = []

    public init(_ name: String, classes: Int, dim: Int, _ f: ParameterFactory) {
        self.classes = classes
        self.dim = dim
        table = f.normal(name + ".weight", [classes + 1, dim])
    }

    /// Labels must be in 0...classes (nil: every sample takes the null class).
    public static func check(_ y: [Int]?, classes: Int, batch: Int) {
        if let y {
            precondition(y.count == batch, "need one class label per sample: \(y.count) labels for batch \(batch)")
            for v in y { precondition(v >= 0 && v <= classes, "class label \(v) out of range 0...\(classes)") }
        }
    }

    /// h[r, :] += table[y[r], :]; y nil means the null class.
    public func addForward(_ y: [Int]?, batch: Int, into h: UnsafeMutablePointer<Float>) {
        labels = y ?? [Int](repeating: classes, count: batch)
        let w = table.w
        for (r, label) in labels.enumerated() {
            let row = w + label * dim, dst = h + r * dim
            for i in 0..<dim { dst[i] += row[i] }
        }
    }

    /// grad(table[y[r]]) += dh[r].
    public func backward(_ dh: UnsafePointer<Float>) {
        let g = table.g
        for (r, label) in labels.enumerated() {
            let row = g + label * dim, src = dh + r * dim
            for i in 0..<dim { row[i] += src[i] }
        }
    }
}
