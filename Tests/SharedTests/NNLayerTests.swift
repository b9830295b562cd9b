import XCTest
import Shared

func arr(_ p: UnsafePointer<Float>, _ n: Int) -> [Float] { Array(UnsafeBufferPointer(start: p, count: n)) }
func arr(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> [Float] { Array(UnsafeBufferPointer(start: p, count: n)) }

/// Keeps the most recent input alive (layers keep a pointer to it until backward).
final class Holder { var x: [Float] = [] }

final class NNLayerTests: XCTestCase {
    /// Direct convolution in Double: y[n,o,i,j] = b[o] + sum_{c,ky,kx} W[o,c,ky,kx] x[n,c,i*s+ky-p,j*s+kx-p].
    func naiveConv(_ x: [Float], n: Int, cin: Int, h: Int, w: Int, _ conv: Conv2d) -> [Double] {
        let k = conv.kernel, s = conv.stride, p = k / 2
        let (ho, wo) = conv.outputSize(h, w)
        var y = [Double](repeating: 0, count: n * conv.cout * ho * wo)
        for b in 0..<n { for o in 0..<conv.cout { for i in 0..<ho { for j in 0..<wo {
            var acc = Double(conv.bias.value[o])
            for c in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                let iy = i * s + ky - p, ix = j * s + kx - p
                if iy >= 0 && iy < h && ix >= 0 && ix < w {
                    acc += Double(conv.weight.value[((o * cin + c) * k + ky) * k + kx]) * Double(x[((b * cin + c) * h + iy) * w + ix])
                }
            }}}
            y[((b * conv.cout + o) * ho + i) * wo + j] = acc
        }}}}
        return y
    }

    func testConv2dForwardAndGradients() {
        for (k, s, h, w) in [(3, 1, 5, 6), (3, 2, 5, 6), (3, 2, 6, 4), (1, 1, 4, 3), (3, 1, 1, 1), (3, 2, 1, 2)] {
            let f = ParameterFactory(seed: 1), ws = Workspace()
            let conv = Conv2d("c", 3, 4, kernel: k, stride: s, f, ws)
            let n = 5   // more samples than reduction chunks
            let x = testNormals(n * 3 * h * w, seed: 2)
            let hold = Holder()
            let fwd: ([Float]) -> [Float] = { x in
                hold.x = x
                let (ho, wo) = conv.outputSize(h, w)
                return hold.x.withUnsafeBufferPointer { arr(conv.forward($0.baseAddress!, n: n, h: h, w: w), n * 4 * ho * wo) }
            }
            let y = fwd(x), ref = naiveConv(x, n: n, cin: 3, h: h, w: w, conv)
            // float32 sums of <= 27 terms of size ~1: rounding ~1e-6
            for i in 0..<y.count { XCTAssertEqual(Double(y[i]), ref[i], accuracy: 1e-5, "k\(k) s\(s) \(h)x\(w) at \(i)") }
            gradCheck("Conv2d k\(k) s\(s) \(h)x\(w)", input: x, params: conv.parameters, forward: fwd,
                      backward: { dy in dy.withUnsafeBufferPointer { arr(conv.backward($0.baseAddress!)!, n * 3 * h * w) } })
        }
    }

    func testGroupNormForwardAndGradients() {
        for fused in [false, true] {
            let f = ParameterFactory(seed: 1)
            let gn = GroupNorm("gn", channels: 6, groups: 3, fusedSiLU: fused, f)
            randomizeParameters(gn.parameters, seed: 3, scale: 1)
            let n = 3, hw = 5
            let x = testNormals(n * 6 * hw, seed: 4, scale: 2).enumerated().map { $0.element + Float($0.offset % 7) }
            let hold = Holder()
            let fwd: ([Float]) -> [Float] = { x in
                hold.x = x
                return hold.x.withUnsafeBufferPointer { arr(gn.forward($0.baseAddress!, n: n, hw: hw), n * 6 * hw) }
            }
            let y = fwd(x)
            // closed form per (sample, group) in Double
            for b in 0..<n { for g in 0..<3 {
                let idx = (0..<(2 * hw)).map { (b * 6 + g * 2) * hw + $0 }
                let mean = idx.reduce(0.0) { $0 + Double(x[$1]) } / Double(idx.count)
                let varb = idx.reduce(0.0) { $0 + (Double(x[$1]) - mean) * (Double(x[$1]) - mean) } / Double(idx.count)
                for i in idx {
                    let c = (i / hw) % 6
                    var v = (Double(x[i]) - mean) / (varb + 1e-5).squareRoot() * Double(gn.gamma.value[c]) + Double(gn.beta.value[c])
                    if fused { v = v / (1 + Foundation.exp(-v)) }
                    XCTAssertEqual(Double(y[i]), v, accuracy: 1e-5)
                }
            }}
            for inPlace in [false, true] {
                gradCheck("GroupNorm fused=\(fused) inPlace=\(inPlace)", input: x, params: gn.parameters, forward: fwd,
                          backward: { dy in
                              var d = dy
                              return d.withUnsafeMutableBufferPointer { arr(gn.backward($0.baseAddress!, inPlace: inPlace), n * 6 * hw) }
                          })
            }
        }
    }

    func testAttentionForwardAndGradients() {
        let f = ParameterFactory(seed: 1), ws = Workspace()
        let C = 8, heads = 2, n = 3, P = 10   // P = 8 + 2: vector and tail paths of the softmax
        let at = SpatialAttention("attn", channels: C, heads: heads, groups: 2, f, ws)
        randomizeParameters(at.parameters, seed: 5, scale: 0.5)
        let x = testNormals(n * C * P, seed: 6)
        let hold = Holder()
        let fwd: ([Float]) -> [Float] = { x in
            hold.x = x
            return hold.x.withUnsafeBufferPointer { arr(at.forward($0.baseAddress!, n: n, hw: P), n * C * P) }
        }
        let y = fwd(x)
        // Reference in Double, token-major as the peer describes it.
        let gn = GroupNorm("ref", channels: C, groups: 2, fusedSiLU: false, ParameterFactory(seed: 0))
        gn.gamma.value.assign(Array(at.norm!.gamma.value)); gn.beta.value.assign(Array(at.norm!.beta.value))
        let nrm = x.withUnsafeBufferPointer { arr(gn.forward($0.baseAddress!, n: n, hw: P), n * C * P) }
        func lin(_ W: Parameter, _ B: Parameter, _ v: [Double]) -> [Double] {
            (0..<C).map { o in Double(B.value[o]) + (0..<C).reduce(0.0) { $0 + Double(W.value[o * C + $1]) * v[$1] } }
        }
        let d = C / heads
        for b in 0..<n {
            let tok = (0..<P).map { p in (0..<C).map { c in Double(nrm[(b * C + c) * P + p]) } }
            let q = tok.map { lin(at.wq, at.bq, $0) }, k = tok.map { lin(at.wk, at.bk, $0) }, v = tok.map { lin(at.wv, at.bv, $0) }
            var o = [[Double]](repeating: [Double](repeating: 0, count: C), count: P)
            for hd in 0..<heads { for i in 0..<P {
                let s = (0..<P).map { j in (0..<d).reduce(0.0) { $0 + q[i][hd * d + $1] * k[j][hd * d + $1] } / Double(d).squareRoot() }
                let m = s.max()!, e = s.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
                for c in 0..<d { o[i][hd * d + c] = (0..<P).reduce(0.0) { $0 + e[$1] / z * v[$1][hd * d + c] } }
            }}
            for p in 0..<P {
                let out = lin(at.wo, at.bo, o[p])
                for c in 0..<C {
                    XCTAssertEqual(Double(y[(b * C + c) * P + p]), Double(x[(b * C + c) * P + p]) + out[c], accuracy: 1e-4)
                }
            }
        }
        gradCheck("Attention", input: x, params: at.parameters, forward: fwd,
                  backward: { dy in dy.withUnsafeBufferPointer { arr(at.backward($0.baseAddress!), n * C * P) } })
    }

    func testUpsampleAndDropout() {
        let up = Upsample2x()
        let n = 2, c = 3, h = 2, w = 3
        let x = testNormals(n * c * h * w, seed: 7)
        let hold = Holder()
        let fwd: ([Float]) -> [Float] = { x in
            hold.x = x
            return hold.x.withUnsafeBufferPointer { arr(up.forward($0.baseAddress!, n: n, channels: c, h: h, w: w), n * c * 4 * h * w) }
        }
        let y = fwd(x)
        for pl in 0..<(n * c) { for i in 0..<(2 * h) { for j in 0..<(2 * w) {
            XCTAssertEqual(y[pl * 4 * h * w + i * 2 * w + j], x[pl * h * w + (i / 2) * w + j / 2])
        }}}
        gradCheck("Upsample2x", input: x, params: [], forward: fwd,
                  backward: { dy in dy.withUnsafeBufferPointer { arr(up.backward(UnsafeMutablePointer(mutating: $0.baseAddress!)), n * c * h * w) } })

        // Dropout: kept fraction ~ Bernoulli(0.7) over 40,000 draws (sd 0.0023, 5 sd bound 0.012),
        // kept values scaled by 1/0.7, same (seed, step) -> same mask, another step -> another mask.
        let drop = Dropout(p: 0.3, layer: 1)
        var ones = [Float](repeating: 1, count: 40_000)
        func run(_ step: UInt64) -> [Float] {
            ones.withUnsafeMutableBufferPointer { arr(drop.forward($0.baseAddress!, n: 4, per: 10_000, training: true, seed: 9, step: step), 40_000) }
        }
        let a = run(1), b = run(1), c2 = run(2)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c2)
        let kept = Double(a.filter { $0 != 0 }.count) / 40_000
        XCTAssertEqual(kept, 0.7, accuracy: 0.012)
        XCTAssert(a.allSatisfy { $0 == 0 || abs($0 - 1 / 0.7) < 1e-6 })
        // sample 2's mask does not depend on the batch it is in
        var two = [Float](repeating: 1, count: 20_000)
        let single = two.withUnsafeMutableBufferPointer { arr(drop.forward($0.baseAddress!, n: 2, per: 10_000, training: true, seed: 9, step: 1), 20_000) }
        XCTAssertEqual(Array(single[0..<10_000]), Array(a[0..<10_000]))
        // gradient: backward applies the same mask
        let xs = testNormals(40, seed: 8)
        gradCheck("Dropout", input: xs, params: [], forward: { x in
            hold.x = x
            return hold.x.withUnsafeMutableBufferPointer { arr(drop.forward($0.baseAddress!, n: 2, per: 20, training: true, seed: 3, step: 5), 40) }
        }, backward: { dy in
            var d = dy
            return d.withUnsafeMutableBufferPointer { arr(drop.backward($0.baseAddress!), 40) }
        })
    }

    func testResBlockGradients() {
        for (cin, cout, p) in [(4, 6, Float(0.2)), (4, 4, Float(0))] {
            let f = ParameterFactory(seed: 1), ws = Workspace()
            let rb = ResBlock("rb", cin, cout, tembDim: 5, groups: 2, dropout: p, layer: 3, f, ws)
            randomizeParameters(rb.parameters, seed: 12, scale: 0.4)
            let n = 2, h = 4, w = 3, xCount = n * cin * h * w
            let input = testNormals(xCount + n * 5, seed: 13)
            let hold = Holder()
            let ds = Buffer()
            gradCheck("ResBlock \(cin)->\(cout) p=\(p)", input: input, params: rb.parameters, forward: { v in
                hold.x = v
                return hold.x.withUnsafeBufferPointer {
                    arr(rb.forward($0.baseAddress!, n: n, h: h, w: w, sTemb: $0.baseAddress! + xCount, training: true, seed: 1, step: 2), n * cout * h * w)
                }
            }, backward: { dy in
                let dst = ds.zeroed(n * 5)
                let dx = dy.withUnsafeBufferPointer { arr(rb.backward($0.baseAddress!, dsTemb: dst), xCount) }
                return dx + arr(dst, n * 5)
            })
        }
    }
}
