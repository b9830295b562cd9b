// Checks of the fused GroupNorm(+SiLU) kernels against Double closed forms.
import XCTest
import Foundation
@testable import Shared

final class ElementwiseTests: XCTestCase {
    // Lengths covering the 16-wide, 8-wide and scalar paths (784, 196, 49: the U-Net's planes).
    let lengths = [784, 196, 49, 24, 8, 5]

    /// The one-pass kernels against Double sums. Float sums of n terms of size ~1..30
    /// round to ~1e-7 * sqrt(n) * magnitude; 1e-5 relative bounds it with margin.
    func testReductionKernels() {
        for n in lengths {
            let x = testNormals(n, seed: 1, scale: 2).map { $0 + 3 }, dy = testNormals(n, seed: 2)
            let k = x[0]
            let (s, q) = x.withUnsafeBufferPointer { vshiftedSums($0.baseAddress!, n, k) }
            let rs = x.reduce(0.0) { $0 + Double($1 - k) }, rq = x.reduce(0.0) { $0 + Double($1 - k) * Double($1 - k) }
            XCTAssertEqual(Double(s), rs, accuracy: 1e-5 * max(1, abs(rs), Double(n)), "shifted sum n\(n)")
            XCTAssertEqual(Double(q), rq, accuracy: 1e-5 * rq, "shifted squares n\(n)")
            let (g, gx) = dy.withUnsafeBufferPointer { d in x.withUnsafeBufferPointer { vsumAndDot(d.baseAddress!, $0.baseAddress!, n) } }
            let rg = dy.reduce(0.0) { $0 + Double($1) }, rgx = zip(dy, x).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            XCTAssertEqual(Double(g), rg, accuracy: 1e-5 * Double(n), "sum n\(n)")
            XCTAssertEqual(Double(gx), rgx, accuracy: 1e-5 * 5 * Double(n), "dot n\(n)")
            // fused SiLU gradient: values and both sums, against the scalar siluGrad in Double
            let a: Float = 0.7, b: Float = -0.4
            var dx = [Float](repeating: .nan, count: n)
            let (fs, fsx) = x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { dp in
                dx.withUnsafeMutableBufferPointer { siluGradAffineSums(xp.baseAddress!, dp.baseAddress!, $0.baseAddress!, n, a, b) } } }
            var es = 0.0, esx = 0.0
            for i in 0..<n {
                let v = Double(a) * Double(x[i]) + Double(b), sg = 1 / (1 + Foundation.exp(-v))
                let e = Double(dy[i]) * sg * (1 + v * (1 - sg))
                XCTAssertEqual(Double(dx[i]), e, accuracy: 1e-5 * max(1, abs(e)), "silu grad n\(n) i\(i)")
                es += e; esx += e * Double(x[i])
            }
            XCTAssertEqual(Double(fs), es, accuracy: 1e-5 * Double(n), "silu grad sum n\(n)")
            XCTAssertEqual(Double(fsx), esx, accuracy: 1e-5 * 5 * Double(n), "silu grad dot n\(n)")
        }
    }

    /// GroupNorm(+SiLU) forward and backward at U-Net plane sizes against the closed
    /// forms in Double, with inputs offset by 30 (|mean| = 30 std): a one-pass variance
    /// E[x^2] - mean^2 in float would lose ~1e-4 of it there, the shifted form does not.
    /// With `residual`, backward must return dx + residual.
    func testGroupNormMatchesDoubleClosedForm() {
        let C = 8, G = 2, cg = C / G, n = 5
        for hw in [49, 196, 784] { for fused in [false, true] { for inPlace in [false, true] { for withResidual in [false, true] {
            let gn = GroupNorm("gn", channels: C, groups: G, fusedSiLU: fused, ParameterFactory(seed: 1))
            randomizeParameters(gn.parameters, seed: 3, scale: 1)
            let x = testNormals(n * C * hw, seed: 4).enumerated().map { $0.element + 30 + Float($0.offset / hw % 3) }
            let dz = testNormals(n * C * hw, seed: 5)
            let y = x.withUnsafeBufferPointer { arr(gn.forward($0.baseAddress!, n: n, hw: hw), n * C * hw) }
            let r = testNormals(n * C * hw, seed: 6, scale: 3)
            var d = dz
            let dx = r.withUnsafeBufferPointer { rp in d.withUnsafeMutableBufferPointer {
                arr(gn.backward($0.baseAddress!, inPlace: inPlace, residual: withResidual ? rp.baseAddress! : nil), n * C * hw)
            }}
            var dgamma = [Double](repeating: 0, count: C), dbeta = dgamma
            for s in 0..<n { for g in 0..<G {
                let idx = Array(((s * C + g * cg) * hw)..<((s * C + (g + 1) * cg) * hw))
                let mean = idx.reduce(0.0) { $0 + Double(x[$1]) } / Double(idx.count)
                let variance = idx.reduce(0.0) { $0 + (Double(x[$1]) - mean) * (Double(x[$1]) - mean) } / Double(idx.count)
                let rstd = 1 / (variance + 1e-5).squareRoot()
                var gsum = 0.0, gxsum = 0.0
                var xhat = [Double](), gvals = [Double]()
                for i in idx {
                    let c = (i / hw) % C
                    let xh = (Double(x[i]) - mean) * rstd
                    let v = xh * Double(gn.gamma.value[c]) + Double(gn.beta.value[c])
                    let sg = 1 / (1 + Foundation.exp(-v))
                    // forward: y = gamma xhat + beta (SiLU'd when fused); the affine on x ~ 30
                    // rounds to ~30 * 6e-8 absolute per operation
                    XCTAssertEqual(Double(y[i]), fused ? v * sg : v, accuracy: 2e-5 * max(1, abs(v)), "y hw\(hw) fused=\(fused) i\(i)")
                    let dyp = fused ? Double(dz[i]) * sg * (1 + v * (1 - sg)) : Double(dz[i])
                    dgamma[c] += dyp * xh; dbeta[c] += dyp
                    let gv = dyp * Double(gn.gamma.value[c])
                    gsum += gv; gxsum += gv * xh
                    xhat.append(xh); gvals.append(gv)
                }
                let m = Double(idx.count)
                for (t, i) in idx.enumerated() {
                    let e = rstd * (gvals[t] - gsum / m - xhat[t] * gxsum / m) + (withResidual ? Double(r[i]) : 0)
                    XCTAssertEqual(Double(dx[i]), e, accuracy: 1e-4 * rstd + 1e-4 * abs(e),
                                   "dx hw\(hw) fused=\(fused) inPlace=\(inPlace) residual=\(withResidual) i\(i)")
                }
            }}
            for c in 0..<C {
                // sums of n * hw terms of size ~1: float rounding ~1e-7 * sqrt(count) relative
                XCTAssertEqual(Double(gn.gamma.grad[c]), dgamma[c], accuracy: 1e-4 * Double(n * hw).squareRoot(), "dgamma hw\(hw) c\(c)")
                XCTAssertEqual(Double(gn.beta.grad[c]), dbeta[c], accuracy: 1e-4 * Double(n * hw).squareRoot(), "dbeta hw\(hw) c\(c)")
            }
        }}}}
    }
}
