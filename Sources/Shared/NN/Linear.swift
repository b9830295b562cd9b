// Fully connected layer and SiLU, on row-major [rows, features] matrices.
import COpenBLAS
import Foundation

/// y = x W^T + b with W stored [out, in] (PyTorch layout), on `rows` rows.
public final class Linear {
    public let inFeatures: Int
    public let outFeatures: Int
    public let weight: Parameter
    public let bias: Parameter
    let out = Buffer()
    let dIn = Buffer()
    var input: UnsafePointer<Float>? = nil
    var rows = 0

    public init(_ name: String, _ inFeatures: Int, _ outFeatures: Int, _ f: ParameterFactory) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        let bound = 1 / Float(inFeatures).squareRoot()
        weight = f.uniform(name + ".weight", [outFeatures, inFeatures], bound: bound)
        bias = f.uniform(name + ".bias", [outFeatures], bound: bound)
    }

    public var parameters: [Parameter] { [weight, bias] }

    /// Pieces for our own split of a GEMM: 2 x threads when the work is big enough
    /// to pay for the hand-off, else 1 (a fixed function of the sizes: reproducible).
    func pieces(_ rows: Int) -> Int {
        rows * inFeatures * outFeatures >= 1 << 20 && rows >= 32 ? 2 * BLAS.maxThreads : 1
    }

    /// Forward on x [rows, in]; returns the layer's own [rows, out] buffer.
    /// x must stay alive and unchanged until `backward`. Split over rows.
    public func forward(_ x: UnsafePointer<Float>, rows: Int) -> UnsafeMutablePointer<Float> {
        input = x
        self.rows = rows
        let y = out.ensure(rows * outFeatures)
        let b = UnsafePointer(bias.w), W = UnsafePointer(weight.w)
        let inF = inFeatures, outF = outFeatures
        let k = pieces(rows)
        if k > 1 { BLAS.setThreads(1) }
        parallelFor(k) { piece in
            let r = chunkRange(piece, of: k, n: rows)
            if r.isEmpty { return }
            for i in r { (y + i * outF).update(from: b, count: outF) }
            BLAS.gemm(false, true, r.count, outF, inF, 1, x + r.lowerBound * inF, inF, W, inF, 1, y + r.lowerBound * outF, outF)
        }
        return y
    }

    /// Backward: dW += dy^T x, db += sum_rows dy (split over output features);
    /// returns dx = dy W (split over rows), nil if not wanted.
    @discardableResult
    /// `inputColumns`: compute only the first k columns of dx (the rest is left unset).
    public func backward(_ dy: UnsafePointer<Float>, inputGrad: Bool = true, inputColumns: Int? = nil) -> UnsafeMutablePointer<Float>? {
        let x = input!, rows = self.rows
        let inF = inFeatures, outF = outFeatures
        let gW = weight.g, db = bias.g, W = UnsafePointer(weight.w)
        let dx = inputGrad ? dIn.ensure(rows * inF) : nil
        let k = pieces(rows)
        if k > 1 { BLAS.setThreads(1) }
        parallelFor(k) { piece in
            let o = chunkRange(piece, of: k, n: outF)
            if !o.isEmpty {
                BLAS.gemm(true, false, o.count, inF, rows, 1, dy + o.lowerBound, outF, x, inF, 1, gW + o.lowerBound * inF, inF)
                for r in 0..<rows {
                    let d = dy + r * outF
                    for j in o { db[j] += d[j] }
                }
            }
            if let dx {
                let r = chunkRange(piece, of: k, n: rows)
                if !r.isEmpty {
                    BLAS.gemm(false, false, r.count, inputColumns ?? inF, outF, 1, dy + r.lowerBound * outF, outF, W, inF, 0, dx + r.lowerBound * inF, inF)
                }
            }
        }
        return dx
    }
}

/// Elementwise SiLU(x) = x sigmoid(x) on `count` values.
public final class SiLU {
    let out = Buffer()
    let dIn = Buffer()
    var input: UnsafePointer<Float>? = nil
    var count = 0

    public init() {}

    public func forward(_ x: UnsafePointer<Float>, count: Int) -> UnsafeMutablePointer<Float> {
        input = x
        self.count = count
        let y = out.ensure(count)
        siluAffine(x, y, count, 1, 0)
        return y
    }

    /// dx = dy * s (1 + x (1 - s)), s = sigmoid(x).
    public func backward(_ dy: UnsafePointer<Float>) -> UnsafeMutablePointer<Float> {
        let x = input!
        let dx = dIn.ensure(count)
        siluGradAffine(x, dy, dx, count, 1, 0)
        return dx
    }
}
