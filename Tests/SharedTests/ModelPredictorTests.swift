// The model-backed predictor: output layout, null class, chunking, the one-forward CFG pair,
// separate models, model files (EMA vs raw) and the classifier gradient (finite differences).
import Foundation
import XCTest
@testable import Shared

/// Delegates to a network and counts forward calls and the samples they carried.
final class CountingNetwork: Network {
    let inner: Network
    var calls = 0, samples = 0
    init(_ inner: Network) { self.inner = inner }
    var parameters: [Parameter] { inner.parameters }
    var config: NetworkConfig { inner.config }
    var store: ParameterStore { inner.store }
    var inputShape: [Int] { inner.inputShape }
    var outputShape: [Int] { inner.outputShape }
    func forward(_ x: [Float], t: [Int], y: [Int]?, training: Bool) -> [Float] {
        calls += 1; samples += t.count
        return inner.forward(x, t: t, y: y, training: training)
    }
    func backward(_ gradOutput: [Float]) -> [Float] { inner.backward(gradOutput) }
}

/// n samples of d deterministic pseudo-random values in about [-2, 2].
func modelTestInput(n: Int, d: Int, seed: UInt64) -> [Float] {
    var r = RandomStream(seed: seed, purpose: .toy, index: 77)
    return (0..<(n * d)).map { _ in r.nextNormal() }
}

final class ModelPredictorTests: XCTestCase {
    let schedule = Schedule.standard()

    func testLearnedVarianceLayoutAndNullClass() throws {
        // Conditional MLP with a learned variance: per sample the output is [eps (2) | v (2)].
        let net = MLP(dim: 2, width: 32, depth: 2, sinusoidDim: 16, classes: 3, learnSigma: true, seed: 5)
        let p = try ModelPredictor(network: net, schedule: schedule)
        XCTAssertTrue(p.learnsVariance)
        XCTAssertEqual(p.classes, 3)
        let n = 7
        let x = modelTestInput(n: n, d: 2, seed: 1)
        let t = (0..<n).map { $0 * 140 }
        let y = (0..<n).map { $0 % 3 }
        let raw = net.forward(x, t: t, y: y, training: false)
        let a = try p.predict(x: x, t: t, y: y)
        for s in 0..<n {
            XCTAssertEqual(Array(a.eps[2 * s ..< 2 * s + 2]), Array(raw[4 * s ..< 4 * s + 2]))
            XCTAssertEqual(Array(a.v![2 * s ..< 2 * s + 2]), Array(raw[4 * s + 2 ..< 4 * s + 4]))
        }
        // y = nil is the null class K = 3, not "no embedding".
        let nullRaw = net.forward(x, t: t, y: Array(repeating: 3, count: n), training: false)
        let u = try p.predict(x: x, t: t, y: nil)
        for s in 0..<n { XCTAssertEqual(Array(u.eps[2 * s ..< 2 * s + 2]), Array(nullRaw[4 * s ..< 4 * s + 2])) }
        XCTAssertNotEqual(u.eps, a.eps)
        // Bad labels and timesteps are errors, not crashes.
        XCTAssertThrowsError(try p.predict(x: x, t: t, y: Array(repeating: 4, count: n)))
        XCTAssertThrowsError(try p.predict(x: x, t: Array(repeating: 1000, count: n), y: y))
    }

    func testUnconditionalModelRefusesLabels() throws {
        let p = try ModelPredictor(network: MLP(dim: 2, width: 16, depth: 1, sinusoidDim: 8, seed: 1), schedule: schedule)
        XCTAssertFalse(p.learnsVariance)
        XCTAssertEqual(p.classes, 0)
        XCTAssertThrowsError(try p.predict(x: [0, 0], t: [3], y: [0])) { e in
            XCTAssertTrue((e as! DDPMError).message.contains("unconditional"))
        }
        XCTAssertThrowsError(try p.predictPair(x: [0, 0], t: [3], y: [0]))
    }

    func testChunkedBatchesGiveTheSameAnswer() throws {
        let net = MLP(dim: 3, width: 24, depth: 2, sinusoidDim: 8, classes: 2, learnSigma: true, seed: 2)
        let counting = CountingNetwork(net)
        let whole = try ModelPredictor(network: net, schedule: schedule)
        let chunked = try ModelPredictor(network: counting, schedule: schedule, maxBatch: 4)
        let n = 11
        let x = modelTestInput(n: n, d: 3, seed: 2), t = (0..<n).map { 90 * $0 }, y = (0..<n).map { $0 % 2 }
        let a = try whole.predict(x: x, t: t, y: y), b = try chunked.predict(x: x, t: t, y: y)
        XCTAssertEqual(counting.calls, 3)   // 4 + 4 + 3
        // Rows are independent; only the GEMM's summation order could differ between batch sizes.
        for i in 0..<a.eps.count {
            XCTAssertEqual(a.eps[i], b.eps[i], accuracy: 1e-5 * max(1, abs(a.eps[i])))
            XCTAssertEqual(a.v![i], b.v![i], accuracy: 1e-5 * max(1, abs(a.v![i])))
        }
    }

    func testGuidedPairIsOneForwardAndMatchesTheMix() throws {
        let net = CountingNetwork(MLP(dim: 2, width: 32, depth: 2, sinusoidDim: 16, classes: 4, seed: 3))
        let p = try ModelPredictor(network: net, schedule: schedule)
        let n = 9
        let x = modelTestInput(n: n, d: 2, seed: 3), t = (0..<n).map { 100 * $0 + 5 }, y = (0..<n).map { $0 % 4 }
        let c = try p.predict(x: x, t: t, y: y), u = try p.predict(x: x, t: t, y: nil)
        net.calls = 0; net.samples = 0
        let guided = try ClassifierFreeGuided(p, scale: 2.5).predict(x: x, t: t, y: y)
        XCTAssertEqual(net.calls, 1, "classifier-free guidance must run one forward")
        XCTAssertEqual(net.samples, 2 * n)
        // eps~ = eps_null + W (eps_y - eps_null), checked elementwise against the separate predictions.
        for i in 0..<x.count {
            let expect = Double(u.eps[i]) + 2.5 * (Double(c.eps[i]) - Double(u.eps[i]))
            XCTAssertEqual(Double(guided.eps[i]), expect, accuracy: 2e-5 * max(1, abs(expect)))
        }
        // W = 1 is the conditional prediction, W = 0 the unconditional one.
        net.calls = 0; net.samples = 0
        let one = try ClassifierFreeGuided(p, scale: 1).predict(x: x, t: t, y: y)
        XCTAssertEqual(net.samples, n, "W = 1 is the conditional prediction alone: no unconditional half")
        XCTAssertEqual(one.eps, c.eps)
        let zero = try ClassifierFreeGuided(p, scale: 0).predict(x: x, t: t, y: y)
        for i in 0..<x.count {
            XCTAssertEqual(one.eps[i], c.eps[i], accuracy: 1e-5)
            XCTAssertEqual(zero.eps[i], u.eps[i], accuracy: 1e-5)
        }
    }

    func testSeparateModelsPair() throws {
        let cNet = MLP(dim: 2, width: 16, depth: 2, sinusoidDim: 8, classes: 2, seed: 4)
        let uNet = MLP(dim: 2, width: 16, depth: 2, sinusoidDim: 8, classes: 0, seed: 9)
        let cp = try ModelPredictor(network: cNet, schedule: schedule), up = try ModelPredictor(network: uNet, schedule: schedule)
        let pair = try SeparateModelsPredictor(cond: cp, uncond: up)
        let x = modelTestInput(n: 5, d: 2, seed: 4), t = [0, 10, 200, 600, 999], y = [0, 1, 1, 0, 1]
        let g = try ClassifierFreeGuided(pair, scale: 3).predict(x: x, t: t, y: y)
        let c = try cp.predict(x: x, t: t, y: y), u = try up.predict(x: x, t: t, y: nil)
        XCTAssertEqual(g.eps, Guidance.classifierFree(cond: c.eps, uncond: u.eps, scale: 3))
        XCTAssertThrowsError(try SeparateModelsPredictor(cond: up, uncond: cp))   // --cond must be conditional
        let other = try ModelPredictor(network: MLP(dim: 3, width: 8, depth: 1, sinusoidDim: 8, classes: 2), schedule: schedule)
        XCTAssertThrowsError(try SeparateModelsPredictor(cond: other, uncond: up))
    }

    func testModelFileEMAAndRawWeights() throws {
        let net = MLP(dim: 2, width: 16, depth: 2, sinusoidDim: 8, classes: 0, seed: 6)
        let ema = EMA(store: net.store, decay: 0.9)
        // Make the raw weights differ from the EMA ones.
        for p in net.parameters { for i in 0..<p.count { p.value[i] += 0.05 } }
        let frame = ModelFile.frame(network: net, ema: ema, schedule: schedule, info: ["loss": "simple", "classes": "0", "data_shape": "2"])
        let x = modelTestInput(n: 4, d: 2, seed: 6), t = [1, 50, 500, 900]
        let rawP = try ModelPredictor(model: try ModelFile.load(frame: frame, weights: .raw), path: "m")
        let emaP = try ModelPredictor(model: try ModelFile.load(frame: frame, weights: .ema), path: "m")
        XCTAssertEqual(try rawP.predict(x: x, t: t, y: nil).eps, net.forward(x, t: t, y: nil, training: false))
        let reference = MLP(dim: 2, width: 16, depth: 2, sinusoidDim: 8, classes: 0, seed: 6)   // = the EMA shadow (decay from the init)
        XCTAssertEqual(try emaP.predict(x: x, t: t, y: nil).eps, reference.forward(x, t: t, y: nil, training: false))
        XCTAssertEqual(emaP.describe, "model: m")
        let summary = try ModelFile.load(frame: frame).summary
        XCTAssertTrue(summary.contains("arch=mlp") && summary.contains("loss=simple"), summary)
    }

    func testClassifierGradientByFiniteDifferencesAndGuidedEps() throws {
        let clf = try NoiseAwareClassifier(inShape: [3], width: 24, depth: 2, sinusoidDim: 8, classes: 3, seed: 7)
        let g = try ClassifierGradient(network: clf, schedule: schedule, maxBatch: 2)
        let n = 5
        let x = modelTestInput(n: n, d: 3, seed: 7), t = [0, 100, 400, 700, 999], y = [0, 1, 2, 1, 0]
        let (logp, grad) = try g.logProbAndGradient(x: x, t: t, y: y)
        // log p(y | x) from the logits directly, in Double.
        func logProb(_ xs: [Float], _ s: Int) -> Double {
            let l = clf.forward(Array(xs[3 * s ..< 3 * s + 3]), t: [t[s]], y: nil, training: false).map(Double.init)
            let m = l.max()!
            return l[y[s]] - (m + log(l.reduce(0) { $0 + exp($1 - m) }))
        }
        for s in 0..<n {
            XCTAssertEqual(logp[s], logProb(x, s), accuracy: 1e-5)
            XCTAssertLessThan(logp[s], 0)
            for j in 0..<3 {
                // Central differences, h = 1e-2: the truncation error h^2/6 f''' is ~1e-5 for these
                // smooth logits; Float rounding of log p (~1e-7) / h adds ~1e-5.
                let h: Float = 1e-2
                var xp = x, xm = x
                xp[3 * s + j] += h; xm[3 * s + j] -= h
                let fd = (logProb(xp, s) - logProb(xm, s)) / Double(2 * h)
                XCTAssertEqual(Double(grad[3 * s + j]), fd, accuracy: 1e-3 * max(1, abs(fd)), "sample \(s) coordinate \(j)")
            }
        }
        // Classifier guidance through a model: eps~ = eps(x, t) - sqrt(1 - abar_t) S grad.
        let model = try ModelPredictor(network: MLP(dim: 3, width: 16, depth: 1, sinusoidDim: 8, seed: 8), schedule: schedule)
        let guided = try ClassifierGuided(model, schedule: schedule, scale: 4, gradient: { try g.gradient(x: $0, t: $1, y: $2) })
            .predict(x: x, t: t, y: y)
        let eps = try model.predict(x: x, t: t, y: nil).eps
        for i in 0..<x.count {
            let expect = Double(eps[i]) - schedule.sqrtOneMinusAlphaBar[t[i / 3]] * 4 * Double(grad[i])
            XCTAssertEqual(Double(guided.eps[i]), expect, accuracy: 1e-5 * max(1, abs(expect)))
        }
        XCTAssertThrowsError(try g.gradient(x: x, t: t, y: [0, 1, 3, 0, 0]))   // label 3 of 3 classes
    }
}
