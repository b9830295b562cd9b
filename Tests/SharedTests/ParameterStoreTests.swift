// The flat parameter store: layout (contiguous slots), lifetime, and AdamW + EMA + clipping on
// the flat buffers against a per-tensor reference (the pre-store implementation, one array per
// tensor), bit for bit.
import XCTest
@testable import Shared

final class ParameterStoreTests: XCTestCase {
    func checkLayout(_ net: Network, file: StaticString = #filePath, line: UInt = #line) {
        let store = net.store, params = net.parameters
        XCTAssertEqual(store.slots.count, params.count, file: file, line: line)
        var offset = 0
        for (p, s) in zip(params, store.slots) {
            XCTAssertEqual(s.offset, offset, "\(s.name): not right after the previous slot", file: file, line: line)
            XCTAssertEqual(p.offset, s.offset, file: file, line: line)
            XCTAssertEqual(s.name, p.name, file: file, line: line)
            XCTAssertEqual(s.shape, p.shape, file: file, line: line)
            XCTAssertEqual(s.count, p.count, file: file, line: line)
            XCTAssertTrue(p.store === store, "\(p.name) is not in the network's store", file: file, line: line)
            XCTAssertEqual(p.value.baseAddress, store.values.baseAddress! + s.offset, file: file, line: line)
            XCTAssertEqual(p.grad.baseAddress, store.grads.baseAddress! + s.offset, file: file, line: line)
            XCTAssertEqual(p.value.count, s.count, file: file, line: line)
            offset += s.count
        }
        XCTAssertEqual(offset, store.count, file: file, line: line)
        XCTAssertEqual(store.values.count, store.count, file: file, line: line)
        XCTAssertEqual(store.grads.count, store.count, file: file, line: line)
    }

    func testStoresAreContiguous() throws {
        let mlp = MLP(dim: 2, width: 16, depth: 2, sinusoidDim: 8, classes: 3, learnSigma: true, seed: 1)
        checkLayout(mlp)
        XCTAssertEqual(mlp.store.count, mlp.parameters.reduce(0) { $0 + $1.count })
        checkLayout(try UNet(config: UNetConfig(inShape: [1, 8, 8], channels: 8, mults: [1, 2], resBlocks: 1,
                                                attnResolutions: [4], heads: 2, headDim: 4, groups: 4, dropout: 0,
                                                classes: 2, learnSigma: false, seed: 2)))
        checkLayout(try NoiseAwareClassifier(inShape: [3], width: 8, depth: 2, sinusoidDim: 8, classes: 4, seed: 3))
        checkLayout(try NoiseAwareUNetClassifier(inShape: [1, 8, 8], channels: 8, mults: [1, 2], resBlocks: 1, groups: 4,
                                                 classes: 3, seed: 4))
        // Packing keeps the values (the factory's initialisation) and the order.
        let f = ParameterFactory(seed: 1)
        let a = f.uniform("a", [3, 2], bound: 1), b = f.constant("b", [5], 0.5), c = f.normal("c", [4])
        let before = [a, b, c].map { Array($0.value) }
        let store = ParameterStore(packing: [a, b, c])
        XCTAssertEqual([a, b, c].map { Array($0.value) }, before)
        XCTAssertEqual(Array(store.values), before.flatMap { $0 })
        XCTAssertEqual(store.slots.map(\.offset), [0, 6, 11])
        XCTAssertEqual(store.count, 15)
        // The parameters write into the store.
        a.value[1] = 7; c.grad[3] = 2
        XCTAssertEqual(store.values[1], 7); XCTAssertEqual(store.grads[14], 2)
        store.zeroGrad()
        XCTAssertTrue(store.grads.allSatisfy { $0 == 0 })
    }

    func testStoreLifetime() {
        // No reference cycle: the store goes with the network (its deinit frees the buffers), and
        // a parameter kept alone keeps its store's memory alive.
        weak var gone: ParameterStore?
        var kept: Parameter?
        do {
            let net = MLP(dim: 2, width: 8, depth: 1, sinusoidDim: 4, seed: 1)
            let opt = AdamW(store: net.store, config: OptimizerConfig()), ema = EMA(store: net.store, decay: 0.9)
            opt.update(ema: ema)
            gone = net.store
            kept = net.parameters[1]
        }
        XCTAssertNotNil(gone)
        let values = Array(kept!.value)
        XCTAssertEqual(values.count, 8)
        kept = nil
        XCTAssertNil(gone)
    }

    /// The per-tensor AdamW + EMA + clipping of the pre-store code (one array per tensor), with
    /// the scalar formulas: the flat buffers' results must equal it bit for bit.
    final class Reference {
        var w: [[Float]], m: [[Float]], v: [[Float]], s: [[Float]]
        let config: OptimizerConfig, decay: Double
        var step = 0, updates = 0
        init(_ ps: [Parameter], _ config: OptimizerConfig, decay: Double) {
            w = ps.map { Array($0.value) }
            m = w.map { [Float](repeating: 0, count: $0.count) }
            v = m
            s = w
            self.config = config
            self.decay = decay
        }
        func norm(_ g: [[Float]]) -> Double {
            var total = 0.0
            for t in g {
                var lanes = SIMD8<Double>(repeating: 0)
                var i = 0
                while i + 8 <= t.count {
                    var x = SIMD8<Double>()
                    for l in 0..<8 { x[l] = Double(t[i + l]) }
                    lanes += x * x
                    i += 8
                }
                var tail = 0.0
                while i < t.count { let x = Double(t[i]); tail += x * x; i += 1 }
                total += lanes.sum() + tail
            }
            return total.squareRoot()
        }
        func step(_ grads: [[Float]]) {
            var g = grads
            let nrm = norm(g)
            if config.clip > 0, nrm > config.clip {
                let scale = Float(config.clip / nrm)
                for j in g.indices { for i in g[j].indices { g[j][i] *= scale } }
            }
            let k = step + 1
            let lr = config.warmup > 0 ? config.lr * min(1, Double(k) / Double(config.warmup)) : config.lr
            let b1 = Float(config.beta1), b2 = Float(config.beta2)
            let c1 = Float(1 / (1 - pow(config.beta1, Double(k)))), c2 = Float(1 / (1 - pow(config.beta2, Double(k))))
            let eps = Float(config.eps), lrF = Float(lr), dec = Float(lr * config.weightDecay)
            let d = Float(min(decay, Double(1 + updates) / Double(10 + updates)))
            for j in w.indices {
                for i in w[j].indices {
                    let gi = g[j][i]
                    let mi = b1 * m[j][i] + (1 - b1) * gi
                    let vi = b2 * v[j][i] + (1 - b2) * gi * gi
                    m[j][i] = mi
                    v[j][i] = vi
                    w[j][i] = w[j][i] - (lrF * ((mi * c1) / ((vi * c2).squareRoot() + eps)) + dec * w[j][i])
                    s[j][i] = d * s[j][i] + (1 - d) * w[j][i]
                }
            }
            step += 1
            updates += 1
        }
    }

    func testFlatAdamWAndEMAMatchPerTensorReference() {
        func bits(_ a: [[Float]]) -> [[UInt32]] { a.map { $0.map(\.bitPattern) } }
        // An MLP big enough for the threaded AdamW split (>= 16384 elements), tensors of odd sizes
        // (the 8-lane blocks of the norm restart at every tensor), with clipping, decay and warm-up.
        let net = MLP(dim: 3, width: 128, depth: 2, sinusoidDim: 10, classes: 3, learnSigma: true, seed: 7)
        XCTAssertGreaterThan(net.store.count, 16_384)
        var c = OptimizerConfig()
        c.lr = 1e-2; c.weightDecay = 0.05; c.warmup = 3; c.clip = 0.5
        let opt = AdamW(store: net.store, config: c), ema = EMA(store: net.store, decay: 0.99)
        let ref = Reference(net.parameters, c, decay: 0.99)
        let n = 40
        for k in 0..<5 {
            let x = testNormals(n * 3, seed: 100 + UInt64(k))
            let t = (0..<n).map { ($0 * 97 + k) % 1000 }, y = (0..<n).map { $0 % 4 }
            let out = net.forward(x, t: t, y: y, training: true)
            net.store.zeroGrad()
            _ = net.backward(testNormals(out.count, seed: 200 + UInt64(k), scale: 3))
            let grads = net.parameters.map { Array($0.grad) }
            XCTAssertEqual(opt.gradientNorm().bitPattern, ref.norm(grads).bitPattern, "norm, step \(k)")
            let nrm = opt.clipGradients()
            XCTAssertGreaterThan(nrm, c.clip, "step \(k) should clip")
            opt.update(ema: ema)
            ref.step(grads)
            XCTAssertEqual(bits(net.parameters.map { Array($0.value) }), bits(ref.w), "weights, step \(k)")
            XCTAssertEqual(bits(net.store.slots.map { Array(net.store.slice(opt.m, $0.range)) }), bits(ref.m), "m, step \(k)")
            XCTAssertEqual(bits(net.store.slots.map { Array(net.store.slice(opt.v, $0.range)) }), bits(ref.v), "v, step \(k)")
            XCTAssertEqual(bits(net.store.slots.map { Array(net.store.slice(ema.shadow, $0.range)) }), bits(ref.s), "EMA, step \(k)")
        }
        XCTAssertEqual(opt.step, 5); XCTAssertEqual(ema.updates, 5)
        // A checkpoint frame slices the flat buffers per parameter, and reading it back fills them.
        let frame = ModelFile.frame(network: net, ema: ema, schedule: .standard(), info: [:], optimizer: opt)
        XCTAssertEqual(frame.names.filter { $0 != "schedule.beta" },
                       ["ema.", "raw.", "adam.m.", "adam.v."].flatMap { p in net.parameters.map { p + $0.name } })
        for (j, p) in net.parameters.enumerated() {
            XCTAssertEqual(frame["raw." + p.name]!.floats, ref.w[j])
            XCTAssertEqual(frame["ema." + p.name]!.floats, ref.s[j])
            XCTAssertEqual(frame["adam.m." + p.name]!.floats, ref.m[j])
            XCTAssertEqual(frame["adam.v." + p.name]!.floats, ref.v[j])
        }
        let again = MLP(dim: 3, width: 128, depth: 2, sinusoidDim: 10, classes: 3, learnSigma: true, seed: 7)
        let opt2 = AdamW(store: again.store, config: c), ema2 = EMA(store: again.store, decay: 0.99)
        XCTAssertNoThrow(try ModelFile.read(frame, store: again.store, into: [("raw.", again.store.values), ("ema.", ema2.shadow),
                                                                              ("adam.m.", opt2.m), ("adam.v.", opt2.v)]))
        XCTAssertEqual(Array(again.store.values), Array(net.store.values))
        XCTAssertEqual(Array(ema2.shadow), Array(ema.shadow))
        XCTAssertEqual(Array(opt2.m), Array(opt.m)); XCTAssertEqual(Array(opt2.v), Array(opt.v))
        // A bad tensor anywhere leaves every buffer as it was.
        var bad = frame
        bad["adam.v.out.bias"] = Tensor([Float](repeating: 0, count: 2), shape: [2])
        let fresh = MLP(dim: 3, width: 128, depth: 2, sinusoidDim: 10, classes: 3, learnSigma: true, seed: 7)
        let opt3 = AdamW(store: fresh.store, config: c)
        let init0 = Array(fresh.store.values)
        XCTAssertThrowsError(try ModelFile.read(bad, store: fresh.store, into: [("raw.", fresh.store.values), ("adam.v.", opt3.v)]))
        XCTAssertEqual(Array(fresh.store.values), init0)
        XCTAssertTrue(opt3.v.allSatisfy { $0 == 0 })
    }
}
