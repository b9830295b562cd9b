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

    /// Forward on x [rows, in]; returns the layer's own [rows, out] buffer.
    /// x must stay alive and unchanged until `backward`.
    public func forward(_ x: UnsafePointer<Float>, rows: Int) -> UnsafeMutablePointer<Float> {
        input = x
        self.rows = rows
        let y = out.ensure(rows * outFeatures)
        let b = bias.w
        for r in 0..<rows { (y + r * outFeatures).update(from: b, count: outFeatures) }
        BLAS.gemm(false, true, rows, outFeatures, inFeatures, 1, x, inFeatures, weight.w, inFeatures, 1, y, outFeatures)
        return y
    }

    /// Backward: dW += dy^T x, db += sum_rows dy; returns dx = dy W (nil if not wanted).
    @discardableResult
    public func backward(_ dy: UnsafePointer<Float>, inputGrad: Bool = true) -> UnsafeMutablePointer<Float>? {
        let x = input!
        BLAS.gemm(true, false, outFeatures, inFeatures, rows, 1, dy, outFeatures, x, inFeatures, 1, weight.g, inFeatures)
        let db = bias.g
        for r in 0..<rows {
            let d = dy + r * outFeatures
            for o in 0..<outFeatures { db[o] += d[o] }
        }
        guard inputGrad else { return nil }
        let dx = dIn.ensure(rows * inFeatures)
        BLAS.gemm(false, false, rows, inFeatures, outFeatures, 1, dy, outFeatures, weight.w, inFeatures, 0, dx, inFeatures)
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
