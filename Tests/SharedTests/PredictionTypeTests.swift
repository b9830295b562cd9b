// x0- and v-prediction and the Min-SNR weighting (Parameterization.swift): the conversions, the
// weights against their closed forms and their meaning, the weighted loss's gradient, training on
// the swiss roll with each target, model files with prediction = v through the tools, a predictor
// process answering v_pred, and zero terminal SNR with v-prediction.
import Foundation
import XCTest
@testable import Shared

final class PredictionTypeTests: XCTestCase {
    // MARK: conversions

    func testConversionsRoundTrip() {
        var r = RandomStream(seed: 11, purpose: .toy, index: 0)
        let abars: [Double] = [0, 1e-12, 1e-6, 1e-3, 0.1, 0.5, 0.9, 0.9999, 1 - 1e-8, 1 - 1e-12, 1]
        for abar in abars {
            let a = abar.squareRoot(), s = (1 - abar).squareRoot()
            for _ in 0..<200 {
                let x0 = 2 * Double(r.nextNormal()), eps = Double(r.nextNormal())
                let xt = a * x0 + s * eps
                for type in PredictionType.allCases {
                    if type == .eps && abar == 0 { continue }   // x_0 undefined from eps
                    if type == .x0 && abar == 1 { continue }    // eps undefined from x_0 (see below)
                    let out = Parameterization.output(eps: eps, x0: x0, alphaBar: abar, type: type)
                    let c = Parameterization.convert(out, xt: xt, alphaBar: abar, type: type)
                    // Rounding of x_t (~1e-16 |x_t|) is divided by a (eps type -> x0) or s (x0 type -> eps).
                    let tolX0 = type == .eps ? 1e-14 / a : 1e-13, tolEps = type == .x0 ? 1e-14 / s : 1e-13
                    XCTAssertEqual(c.x0, x0, accuracy: tolX0, "\(type) abar \(abar)")
                    XCTAssertEqual(c.eps, eps, accuracy: tolEps, "\(type) abar \(abar)")
                }
            }
        }
        // abar = 0 (zero terminal SNR): v gives x_0 = -v and eps = x_t exactly.
        let atZero = Parameterization.convert(0.7, xt: -1.3, alphaBar: 0, type: .v)
        XCTAssertEqual(atZero.x0, -0.7); XCTAssertEqual(atZero.eps, -1.3)
        XCTAssertEqual(Parameterization.convert(0.7, xt: -1.3, alphaBar: 0, type: .x0).eps, -1.3)
        // abar = 1 for x0-prediction: x_t = x_0 whatever eps is; eps = 0 (documented), never NaN.
        let atOne = Parameterization.convert(0.4, xt: 0.4, alphaBar: 1, type: .x0)
        XCTAssertEqual(atOne.x0, 0.4); XCTAssertEqual(atOne.eps, 0)

        // The batch path (Float) on a zero-terminal-SNR schedule, every 37th t and the last.
        let z = try! Schedule.make(.linear, zeroTerminalSNR: true)
        let ts = Array(stride(from: 0, to: 1000, by: 37)) + [999]
        let d = 3
        var x0s = [Float](), epss = [Float](), xts = [Float]()
        for t in ts {
            for _ in 0..<d {
                let x0 = r.nextNormal(), e = r.nextNormal()
                x0s.append(x0); epss.append(e)
                xts.append(Float(z.sqrtAlphaBar[t] * Double(x0) + z.sqrtOneMinusAlphaBar[t] * Double(e)))
            }
        }
        let abar = ts.map { z.alphaBar[$0] }
        for type in PredictionType.allCases {
            let raw = (0..<xts.count).map { i in Float(Parameterization.output(eps: Double(epss[i]), x0: Double(x0s[i]), alphaBar: abar[i / d], type: type)) }
            let p = Parameterization.prediction(raw: Prediction(eps: raw, v: [Float](repeating: 0.25, count: raw.count)), x: xts, alphaBar: abar, type: type)
            XCTAssertEqual(p.v!, [Float](repeating: 0.25, count: raw.count))   // the learned variance is passed through
            if type == .eps { XCTAssertNil(p.x0); XCTAssertEqual(p.eps, raw); continue }
            for i in 0..<xts.count {
                let s = z.sqrtOneMinusAlphaBar[ts[i / d]]
                XCTAssertEqual(p.x0![i], x0s[i], accuracy: 1e-5, "\(type) t \(ts[i / d])")
                // x0-prediction's eps divides the Float rounding of x_t by s (s >= 0.01 here).
                XCTAssertEqual(p.eps[i], epss[i], accuracy: type == .x0 ? Float(1e-6 / s) : 1e-5, "\(type) t \(ts[i / d])")
            }
        }
    }

    // MARK: Min-SNR

    func testMinSNRWeightsAgainstTheClosedForm() throws {
        for schedule in [Schedule.standard(), try Schedule.make(.cosine), try Schedule.make(.linear, zeroTerminalSNR: true)] {
            for g in [1.0, 5.0] {
                for t in 0..<schedule.T {
                    let ab = schedule.alphaBar[t], snr = ab / (1 - ab)
                    let expected: [PredictionType: Double] = [.x0: min(snr, g), .eps: snr == 0 ? 1 : min(snr, g) / snr, .v: min(snr, g) / (snr + 1)]
                    for (type, w) in expected {
                        XCTAssertEqual(Parameterization.minSNRWeight(alphaBar: ab, gamma: g, type: type), w, accuracy: 1e-12 * max(1, w), "\(type) t \(t)")
                        let loss = DiffusionLoss(kind: .simple, schedule: schedule, decoder: .gaussian, prediction: type, weighting: .minSNR, snrGamma: g)
                        XCTAssertEqual(loss.weight(t: t), w, accuracy: 1e-12 * max(1, w))
                        XCTAssertEqual(DiffusionLoss(kind: .simple, schedule: schedule, decoder: .gaussian, prediction: type).weight(t: t), 1)
                    }
                    // Their meaning (Hang et al. eq. 9-11): w_type |target error|^2 = min(SNR, G) |x_0 error|^2
                    // for an error delta in the network output at fixed x_t (0 < abar < 1).
                    guard ab > 0 else { continue }
                    for type in PredictionType.allCases {
                        let x0 = 0.3, eps = -1.1, xt = ab.squareRoot() * x0 + (1 - ab).squareRoot() * eps, delta = 0.01
                        let out = Parameterization.output(eps: eps, x0: x0, alphaBar: ab, type: type) + delta
                        let e0 = Parameterization.convert(out, xt: xt, alphaBar: ab, type: type).x0 - x0
                        let lhs = Parameterization.minSNRWeight(alphaBar: ab, gamma: g, type: type) * delta * delta
                        XCTAssertEqual(lhs, min(snr, g) * e0 * e0, accuracy: 1e-6 * lhs + 1e-15, "\(type) t \(t)")
                    }
                }
            }
        }
    }

    /// n samples of m values: x_0, eps, t, x_t, and an output near each type's target.
    func batch(_ schedule: Schedule, n: Int, m: Int, type: PredictionType, outputs w: Int, seed: UInt64 = 3)
        -> (x0: [Float], eps: [Float], xt: [Float], t: [Int], out: [Float]) {
        var r = RandomStream(seed: seed, purpose: .toy, index: 1)
        var x0 = [Float](), eps = [Float](), xt = [Float](), out = [Float]()
        let t = (0..<n).map { [0, 5, 60, 300, 700, 998][$0 % 6] + $0 / 6 }
        for s in 0..<n {
            let ab = schedule.alphaBar[t[s]]
            for _ in 0..<m {
                let a = r.nextNormal(), e = r.nextNormal()
                x0.append(a); eps.append(e)
                xt.append(Float(ab.squareRoot() * Double(a) + (1 - ab).squareRoot() * Double(e)))
                out.append(Float(Parameterization.target(x0: Double(a), eps: Double(e), alphaBar: ab, type: type)) + 0.3 * r.nextNormal())
            }
            for _ in m..<w { out.append(0.5 * r.nextNormal()) }   // rows [target-like | variance v] when w = 2m
        }
        return (x0, eps, xt, t, out)
    }

    func testWeightedLossAndItsGradient() throws {
        let schedule = Schedule.standard()
        let n = 12, m = 3
        for type in PredictionType.allCases {
            let b = batch(schedule, n: n, m: m, type: type, outputs: m)
            let uniform = DiffusionLoss(kind: .simple, schedule: schedule, decoder: .gaussian, prediction: type)
            let weighted = DiffusionLoss(kind: .simple, schedule: schedule, decoder: .gaussian, prediction: type, weighting: .minSNR, snrGamma: 5)
            var gu: [Float] = [], gw: [Float] = []
            let lu = uniform.evaluate(output: b.out, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &gu)
            let lw = weighted.evaluate(output: b.out, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &gw)
            // The loss from the targets written out here: eps, x_0, or v = sqrt(abar) eps - sqrt(1 - abar) x_0.
            var expectU = 0.0, expectW = 0.0
            for s in 0..<n {
                let ab = schedule.alphaBar[b.t[s]]
                var mse = 0.0
                for i in s * m ..< (s + 1) * m {
                    let target: Double
                    switch type {
                    case .eps: target = Double(b.eps[i])
                    case .x0: target = Double(b.x0[i])
                    case .v: target = ab.squareRoot() * Double(b.eps[i]) - (1 - ab).squareRoot() * Double(b.x0[i])
                    }
                    mse += (Double(b.out[i]) - target) * (Double(b.out[i]) - target) / Double(m)
                }
                expectU += mse / Double(n)
                expectW += weighted.weight(t: b.t[s]) * mse / Double(n)
                // The weighted gradient is w(t) times the unweighted one, per sample.
                for i in s * m ..< (s + 1) * m {
                    XCTAssertEqual(Double(gw[i]), weighted.weight(t: b.t[s]) * Double(gu[i]), accuracy: 1e-6 * abs(Double(gu[i])) + 1e-12, "\(type)")
                }
            }
            XCTAssertEqual(lu.loss, expectU, accuracy: 1e-5 * expectU, "\(type)")   // targets computed in Float by the loss
            XCTAssertEqual(lw.loss, expectW, accuracy: 1e-5 * expectW, "\(type)")
            XCTAssertEqual(lw.simple, lw.loss)
            // Central differences of the weighted loss (a quadratic: exact up to rounding) on every element.
            for i in 0..<b.out.count {
                var plus = b.out, minus = b.out
                plus[i] += 1e-2; minus[i] -= 1e-2
                var scratch: [Float] = []
                let h = Double(plus[i]) - Double(minus[i])
                let fd = (weighted.evaluate(output: plus, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &scratch).loss
                          - weighted.evaluate(output: minus, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &scratch).loss) / h
                XCTAssertEqual(Double(gw[i]), fd, accuracy: 1e-4 * abs(fd) + 1e-9, "\(type) element \(i)")
            }
        }
    }

    func testHybridLossOfVAndX0UsesTheConvertedMean() throws {
        // The L_vlb term of an x0- or v-output equals that of the eps-output it converts to (the
        // posterior mean from x0^ or from eps^ is the same), and so does its gradient in v.
        let schedule = Schedule.standard()
        let n = 12, m = 3
        for type in [PredictionType.x0, .v] {
            let b = batch(schedule, n: n, m: m, type: type, outputs: 2 * m, seed: 5)
            var asEps = b.out
            for s in 0..<n {
                let ab = schedule.alphaBar[b.t[s]]
                for i in 0..<m {
                    let j = s * 2 * m + i
                    asEps[j] = Float(Parameterization.convert(Double(b.out[j]), xt: Double(b.xt[s * m + i]), alphaBar: ab, type: type).eps)
                }
            }
            let lt = DiffusionLoss(kind: .hybrid, schedule: schedule, decoder: .gaussian, prediction: type)
            let le = DiffusionLoss(kind: .hybrid, schedule: schedule, decoder: .gaussian)
            var gt: [Float] = [], ge: [Float] = []
            let vt = lt.evaluate(output: b.out, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &gt)
            let ve = le.evaluate(output: asEps, x0: b.x0, xt: b.xt, eps: b.eps, t: b.t, gradient: &ge)
            // Float rounding of eps^ enters the mean amplified by sqrt(1 - abar)/sqrt(abar) (<= 16 at t = 998 here).
            XCTAssertEqual(vt.vlbTerm, ve.vlbTerm, accuracy: 1e-3 * abs(ve.vlbTerm), "\(type)")
            for s in 0..<n {
                for i in m..<(2 * m) {
                    let j = s * 2 * m + i
                    XCTAssertEqual(gt[j], ge[j], accuracy: 1e-3 * abs(ge[j]) + 1e-7, "\(type) sample \(s)")
                }
            }
        }
    }

    // MARK: guidance

    func testGuidanceMixesEpsAndX0Consistently() throws {
        // A v-predicting analytic mixture (x0 exact) under classifier-free guidance with rescale and
        // under classifier guidance: the answer keeps x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, and its
        // eps equals the eps-predictor's guided eps (the eps path is unchanged).
        for schedule in [Schedule.standard(), try Schedule.make(.linear, zeroTerminalSNR: true)] {
            let comps = [GaussianComponent(mu: -1, sigma: 0.3), GaussianComponent(mu: 1, sigma: 0.5)]
            let null = GaussianComponent(mu: 0, sigma: 1.2)
            let withX0 = GaussianMixturePredictor(components: comps, null: null, schedule: schedule, sampleShape: [3], prediction: .v)
            let plain = GaussianMixturePredictor(components: comps, null: null, schedule: schedule, sampleShape: [3])
            let clf = GaussianRatioClassifier(classes: comps, reference: null, schedule: schedule)
            let guided: [(EpsPredictor, EpsPredictor, String)] = [
                (ClassifierFreeGuided(withX0, scale: 3, rescale: 0.7, schedule: schedule), ClassifierFreeGuided(plain, scale: 3, rescale: 0.7), "cfg"),
                (ClassifierGuided(withX0, schedule: schedule, scale: 2, gradient: { try clf.gradient(x: $0, t: $1, y: $2) }),
                 ClassifierGuided(plain, schedule: schedule, scale: 2, gradient: { try clf.gradient(x: $0, t: $1, y: $2) }), "classifier")]
            var r = RandomStream(seed: 8, purpose: .toy, index: 2)
            let t = [0, 10, 200, 600, 900, 999]
            let x = (0..<(3 * t.count)).map { _ in 1.5 * r.nextNormal() }
            let y = [0, 1, 0, 1, 1, 0]
            for (g, reference, name) in guided {
                XCTAssertEqual(g.predictionType, .v)
                let p = try g.checkedPredict(x: x, t: t, y: y), q = try reference.checkedPredict(x: x, t: t, y: y)
                XCTAssertNil(q.x0)
                XCTAssertEqual(p.eps, q.eps, name)
                for i in 0..<x.count {
                    let ab = schedule.alphaBar[t[i / 3]]
                    XCTAssertTrue(p.x0![i].isFinite)
                    let back = ab.squareRoot() * Double(p.x0![i]) + (1 - ab).squareRoot() * Double(p.eps[i])
                    XCTAssertEqual(back, Double(x[i]), accuracy: 2e-5 * max(1, abs(Double(x[i]))), "\(name) t \(t[i / 3])")
                }
            }
        }
    }

    // MARK: training

    func testSwissRollTrainsWithEachTarget() throws {
        // The default MLP (width 128, depth 3), 2000 steps of 256 on 4096 points (about 4 s each in
        // release), EMA weights, DDIM 50 steps, 4000 samples against 4000 fresh points.
        let data = TrainingData(x: swissRoll(n: 4096, seed: 0), y: nil, sampleShape: [2])
        let fresh = swissRoll(n: 4000, seed: 77)
        let schedule = Schedule.standard()
        var r = RandomStream(seed: 4, purpose: .toy, index: 5)
        let swGauss = slicedWasserstein((0..<8000).map { _ in r.nextNormal() }, fresh)
        var sw: [String: Double] = [:]
        for (name, type, weighting) in [("eps", PredictionType.eps, LossWeighting.uniform), ("x0", .x0, .uniform), ("v", .v, .uniform),
                                        ("v min-snr", .v, .minSNR)] {
            var config = TrainConfig()
            config.batch = 256; config.optimizer.lr = 1e-3; config.seed = 1; config.prediction = type; config.weighting = weighting
            let net = try NetworkFactory.make(architecture: ["arch": "mlp", "dim": "2", "seed": "1"])
            let trainer = try Trainer(network: net, schedule: schedule, data: data, config: config)
            for _ in 0..<2000 { try trainer.trainStep() }
            net.store.values.assign(Array(trainer.ema.shadow))
            let p = try ModelPredictor(network: net, schedule: schedule, prediction: type)
            XCTAssertEqual(p.predictionType, type)
            let x = try sampleInProcess(p, schedule: schedule, options: options(.ddim, steps: 50), n: 4000, d: 2, seed: 5)
            XCTAssertTrue(x.allSatisfy { $0.isFinite }, name)
            sw[name] = slicedWasserstein(x, fresh)
        }
        print("swiss roll SW2 after 2000 steps (DDIM 50): " + sw.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.4f", $0.value))" }.joined(separator: ", ")
              + String(format: "; N(0, I) %.4f", swGauss))
        // Measured with the CLI (same budget): eps 0.095, x0 0.096, v 0.093, v min-snr 0.089; N(0, I) ~0.5.
        // Each target within 1.5x of eps (a broken target or conversion lands near N(0, I), 5x away).
        for (name, value) in sw {
            XCTAssertLessThan(value, 1.5 * sw["eps"]!, name)
            XCTAssertLessThan(value, 0.3 * swGauss, name)
        }
    }

    /// The haze between the roll's arms is the plain MLP's spectral bias (docs/RESULTS.md, section
    /// 3a): with Fourier features of the input (F = 6) fewer samples land off the roll at the same
    /// budget. Measured: the fraction farther than 0.06 (3 sigma of the jitter) from the noiseless
    /// curve, DDPM 1000, 2000 samples: 80 % without, 63 % with at 3000 steps of 256 (examples.sh's
    /// 15,000 steps: 15 % and 6 %). The binomial noise of 2000 samples is 1 %: a gap of 8 points
    /// is far outside it, and a broken phi (its gradient, its columns) loses the gain.
    func testFourierFeaturesPutTheRollSamplesOnTheArms() throws {
        let data = TrainingData(x: swissRoll(n: 10000, seed: 0), y: nil, sampleShape: [2])
        let schedule = Schedule.standard()
        // The noiseless curve t (cos t, sin t) / (4.5 pi), t in [1.5 pi, 4.5 pi], densely.
        let curve: [(Float, Float)] = (0...20000).map { i in
            let t = 1.5 * Double.pi * (1 + 2 * Double(i) / 20000)
            return (Float(t * Foundation.cos(t) / (4.5 * Double.pi)), Float(t * Foundation.sin(t) / (4.5 * Double.pi)))
        }
        func offRoll(_ x: [Float]) -> Double {
            var off = 0
            for i in 0..<(x.count / 2) {
                var best = Float.infinity
                for (cx, cy) in curve { best = min(best, (x[2 * i] - cx) * (x[2 * i] - cx) + (x[2 * i + 1] - cy) * (x[2 * i + 1] - cy)) }
                if best > 0.06 * 0.06 { off += 1 }
            }
            return Double(off) / Double(x.count / 2)
        }
        var off: [Int: Double] = [:]
        for f in [0, 6] {
            var config = TrainConfig()
            config.batch = 256; config.optimizer.lr = 1e-3; config.seed = 1; config.emaDecay = 0.995
            let net = try NetworkFactory.make(architecture: ["arch": "mlp", "dim": "2", "depth": "4", "fourier": String(f), "seed": "1"])
            let trainer = try Trainer(network: net, schedule: schedule, data: data, config: config)
            for _ in 0..<3000 { try trainer.trainStep() }
            net.store.values.assign(Array(trainer.ema.shadow))
            let p = try ModelPredictor(network: net, schedule: schedule)
            let x = try sampleInProcess(p, schedule: schedule, options: options(.ddpm), n: 2000, d: 2, seed: 1)
            off[f] = offRoll(x)
        }
        print("swiss roll off the arms after 3000 steps: fourier 0 \(off[0]!), fourier 6 \(off[6]!)")
        XCTAssertLessThan(off[6]!, off[0]! - 0.08)
    }

    // MARK: model files through the tools


    func testVPredictionModelFileSamplesBoundsAndResumes() throws {
        let dir = temporaryDirectory()
        let data = dir.appendingPathComponent("roll.st").path, model = dir.appendingPathComponent("v.st").path
        let ck = dir.appendingPathComponent("ck.st").path
        try run("tensor", ["toy", "swissroll", "-n", "1000", "--seed", "1"]).write(to: URL(fileURLWithPath: data))
        let common = ["--data", data, "--arch", "mlp", "--width", "32", "--depth", "2", "--batch", "128", "--quiet"]
        _ = try run("train", common + ["--prediction", "v", "--steps", "300", "--checkpoint", ck, "--every", "150", "-o", model])
        let file = try ModelFile.load(path: model)
        XCTAssertEqual(file.metadata["prediction"], "v"); XCTAssertEqual(file.metadata["weighting"], "uniform")
        XCTAssertEqual(try file.predictionType(), .v)
        let p = try ModelPredictor(model: file, path: model)
        XCTAssertEqual(p.predictionType, .v)
        // Its answers are consistent: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps.
        let x: [Float] = [0.3, -0.2, 1.5, 0.7], t = [10, 900]
        let a = try p.predict(x: x, t: t, y: nil)
        for i in 0..<4 {
            let ab = p.schedule.alphaBar[t[i / 2]]
            XCTAssertEqual(Double(x[i]), ab.squareRoot() * Double(a.x0![i]) + (1 - ab).squareRoot() * Double(a.eps[i]), accuracy: 1e-5)
        }
        // DDPM and DDIM sample; the output names the prediction.
        for extra in [["--steps", "100"], ["--sampler", "ddim", "--steps", "20"]] {
            let out = try run("denoise", ["--model", model, "-n", "300", "--seed", "3", "--quiet"] + extra)
            let s = try xs(out)
            XCTAssertEqual(s.count, 600)
            XCTAssertTrue(s.allSatisfy { $0.isFinite && abs($0) < 5 }, "\(extra)")
            XCTAssertEqual(try decode(out).first?.metadata["prediction"], "v")
            XCTAssertTrue(try decode(out).first!.metadata["model_summary"]!.contains("prediction=v"))
        }
        // The learned variance with v-prediction: [v target | variance v], sampled with it by default.
        let hybrid = dir.appendingPathComponent("vh.st").path
        _ = try run("train", common + ["--prediction", "v", "--loss", "hybrid", "--steps", "100", "-o", hybrid])
        let hs = try xs(try run("denoise", ["--model", hybrid, "-n", "100", "--steps", "50", "--seed", "2", "--quiet"]))
        XCTAssertTrue(hs.count == 200 && hs.allSatisfy { $0.isFinite && abs($0) < 10 })
        // The bound runs.
        let test = try run("tensor", ["toy", "swissroll", "-n", "100", "--seed", "7"])
        let nll = Double(String(decoding: try run("denoise", ["--model", model, "--nll", "--nll-steps", "10", "--quiet"], stdin: test), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertNotNil(nll); XCTAssertTrue(nll?.isFinite == true)

        // A resume keeps the type; a different --prediction is refused.
        let resumed = dir.appendingPathComponent("r.st").path
        _ = try run("train", ["--data", data, "--resume", ck, "--steps", "400", "--quiet", "-o", resumed])
        XCTAssertEqual(try Frame.load(path: resumed).metadata["prediction"], "v")
        _ = try run("train", ["--data", data, "--resume", ck, "--prediction", "v", "--steps", "400", "--quiet", "-o", resumed])
        try fails("train", ["--data", data, "--resume", ck, "--prediction", "eps", "--steps", "400", "--quiet", "-o", resumed],
                  "--prediction eps differs from the checkpoint's v")
        try fails("train", ["--data", data, "--resume", ck, "--weighting", "min-snr", "--steps", "400", "--quiet", "-o", resumed],
                  "--weighting min-snr differs from the checkpoint's uniform")
        // A bad value in a checkpoint or a model file: one line naming the key.
        var frame = try Frame.load(path: ck)
        frame.metadata["prediction"] = "velocity"
        let badCk = dir.appendingPathComponent("bad-ck.st").path
        try frame.save(path: badCk)
        try fails("train", ["--data", data, "--resume", badCk, "--steps", "400", "--quiet", "-o", resumed], "invalid 'prediction' ('velocity'")
        frame.metadata["prediction"] = "v"; frame.metadata["snr_gamma"] = "-2"
        try frame.save(path: badCk)
        try fails("train", ["--data", data, "--resume", badCk, "--steps", "400", "--quiet", "-o", resumed], "Min-SNR gamma -2.0")
        var modelFrame = try Frame.load(path: model)
        modelFrame.metadata["prediction"] = "V"
        let badModel = dir.appendingPathComponent("bad.st").path
        try modelFrame.save(path: badModel)
        try fails("denoise", ["--model", badModel, "-n", "4", "--quiet"], "'prediction' is 'V', expected eps, x0 or v")

        // Min-SNR is stored; the flags' rules.
        let weighted = dir.appendingPathComponent("w.st").path
        _ = try run("train", common + ["--prediction", "x0", "--weighting", "min-snr", "--snr-gamma", "3", "--steps", "20", "-o", weighted])
        let wm = try Frame.load(path: weighted).metadata
        XCTAssertEqual(wm["prediction"], "x0"); XCTAssertEqual(wm["weighting"], "min-snr"); XCTAssertEqual(wm["snr_gamma"], "3.0")
        try fails("train", common + ["--snr-gamma", "3", "--steps", "1", "-o", weighted], "--snr-gamma applies to --weighting min-snr only")
        // Bounds and rules of single flags are usage errors (ArgumentParser's validate()).
        for (args, message) in [(["--weighting", "min-snr", "--snr-gamma", "0"], "--snr-gamma: Min-SNR gamma 0.0 must be a finite number > 0"),
                                (["--prediction", "w"], "--prediction"), (["--classifier", "--prediction", "v"], "--prediction does not apply to --classifier"),
                                (["--classifier", "--weighting", "min-snr"], "--weighting does not apply to --classifier")] {
            let r = try runTool("train", common + ["--steps", "1", "-o", weighted] + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }

    // MARK: the predictor protocol

    func testProcessAnsweringVPredSamplesLikeEpsAnswers() throws {
        let guide = toolPath("guide")
        // The answer of guide for a v-predicting analytic Gaussian is 'v_pred' with the closed form
        // v = sqrt(abar) eps* - sqrt(1 - abar) x0*.
        var request = Frame(metadata: ["kind": "predict", "call": "1"])
        let x: [Float] = [0.9, -0.4, 0.1, 2.0], t = [3, 500]
        request["x"] = Tensor(x, shape: [2, 2]); request["t"] = Tensor(t.map { Int64($0) }, shape: [2])
        let answer = try decode(try run("guide", ["--analytic", "gaussian mu=0.5 sigma=0.3 prediction=v"], stdin: try encode([request])))[0]
        XCTAssertNil(answer["eps"])
        let v = try answer.require("v_pred").floats
        let c = GaussianComponent(mu: 0.5, sigma: 0.3), schedule = Schedule.standard()
        for i in 0..<4 {
            let ab = schedule.alphaBar[t[i / 2]], xi = Double(x[i])
            XCTAssertEqual(Double(v[i]), ab.squareRoot() * c.eps(xi, alphaBar: ab) - (1 - ab).squareRoot() * c.x0(xi, alphaBar: ab), accuracy: 1e-6)
        }
        // Samples through a process answering v_pred (or x0) equal those of eps answers to float tolerance.
        func samples(_ spec: String, _ extra: [String]) throws -> [Float] {
            try xs(try run("denoise", ["--predictor", "\(guide) --analytic '\(spec)'", "--shape", "2", "-n", "200", "--seed", "8", "--quiet"] + extra))
        }
        for extra in [["--sampler", "ddim", "--steps", "20"], ["--steps", "50"]] {
            let eps = try samples("gaussian mu=0.5 sigma=0.3", extra)
            for kind in ["v", "x0"] {
                let other = try samples("gaussian mu=0.5 sigma=0.3 prediction=\(kind)", extra)
                XCTAssertEqual(other.count, eps.count)
                let worst = zip(other, eps).map { abs($0 - $1) }.max()!
                // Each step converts in Float (relative 1e-7); x0 answers divide by sqrt(1 - abar) >= 0.01 at t = 0.
                XCTAssertLessThan(worst, kind == "v" ? 1e-4 : 1e-3, "\(kind) \(extra)")
            }
        }
        // Two kinds in one answer are refused.
        var both = Frame(metadata: ["kind": "eps"])
        both["eps"] = Tensor([Float](repeating: 0, count: 4), shape: [2, 2]); both["v_pred"] = both["eps"]
        let path = temporaryDirectory().appendingPathComponent("both.st").path
        try Frame.save([both], path: path)
        try fails("denoise", ["--predictor", "cat > /dev/null & cat '\(path)'; wait", "--shape", "2", "-n", "2", "--steps", "5", "--quiet"],
                  "give exactly one of 'eps', 'x0', 'v_pred'")
    }

    // MARK: zero terminal SNR

    func testZeroTerminalSNRWithVPrediction() throws {
        let z = try Schedule.make(.linear, zeroTerminalSNR: true)
        XCTAssertEqual(z.alphaBar[999], 0)
        // A network predicting v at abar = 0: x0 = -v and eps = x_t exactly.
        let net = try NetworkFactory.make(architecture: ["arch": "mlp", "dim": "2", "width": "8", "depth": "1", "seed": "4"])
        let mp = try ModelPredictor(network: net, schedule: z, prediction: .v)
        let x: [Float] = [0.4, -1.7, 2.2, 0.05]
        let raw = net.forward(x, t: [999, 999], y: nil, training: false)
        let p = try mp.predict(x: x, t: [999, 999], y: nil)
        XCTAssertEqual(p.x0!, raw.map { -$0 }); XCTAssertEqual(p.eps, x)

        // The exact v-predictor of N(0.5, 0.3^2) data, sampled by DDIM from abar = 0: the chain keeps the
        // terminal level (SamplingPlan keepZeroSNRStart) and takes x0 from the prediction (written out here:
        // x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps, eq. 12 with eta = 0).
        let g = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.3)], schedule: z, sampleShape: [1], prediction: .v)
        let plan = try SamplingPlan(schedule: z, steps: 50, spacing: .trailing, keepZeroSNRStart: true)
        XCTAssertEqual(plan.timesteps.last, 999); XCTAssertNil(plan.droppedTerminal)
        let n = 20000
        var (chain, _) = Sampling.initialNoise(count: n, dimension: 1, seed: 3, firstIndex: 0)
        for i in stride(from: plan.stepCount - 1, through: 0, by: -1) {
            let q = try g.checkedPredict(x: chain, t: Array(repeating: plan.timesteps[i], count: n), y: nil)
            let (_, prev) = plan.alphaBars(i)
            for j in 0..<n { chain[j] = Float(prev.squareRoot() * Double(q.x0![j]) + (1 - prev).squareRoot() * Double(q.eps[j])) }
            if i == plan.stepCount - 1 { XCTAssertTrue(q.x0!.allSatisfy { $0 == 0.5 }) }   // E[x_0 | pure noise] = mu
        }
        XCTAssertTrue(chain.allSatisfy { $0.isFinite })
        // The chain's exact moments: x0* and eps* are affine in x (x0* = ((1 - ab) mu + sqrt(ab) s^2 x) / nv,
        // eps* = sqrt(1 - ab) (x - sqrt(ab) mu) / nv, nv = ab s^2 + 1 - ab), so N(0, 1) maps to a Gaussian.
        var exact = Propagated(mean: 0, variance: 1, A: 1, B: 0)
        for i in stride(from: plan.stepCount - 1, through: 0, by: -1) {
            let (ab, prev) = plan.alphaBars(i)
            let nv = ab * 0.09 + 1 - ab
            let c1 = ab.squareRoot() * 0.09 / nv, c0 = (1 - ab) * 0.5 / nv
            let e1 = (1 - ab).squareRoot() / nv, e0 = -e1 * ab.squareRoot() * 0.5
            let a = prev.squareRoot() * c1 + (1 - prev).squareRoot() * e1, b = prev.squareRoot() * c0 + (1 - prev).squareRoot() * e0
            exact.mean = a * exact.mean + b; exact.variance = a * a * exact.variance
        }
        assertMoments(chain, exact, "DDIM-50 from abar = 0 with x0 of v-prediction")
        // ... and close to the data's N(0.5, 0.3^2): DDIM-50's discretisation shrinks the std by ~9% here.
        XCTAssertEqual(exact.mean, 0.5, accuracy: 0.01); XCTAssertEqual(exact.variance.squareRoot(), 0.3, accuracy: 0.04)

        // The bound takes the mean from x0: on the standard schedule the v route equals the eps route;
        // on the zero-terminal-SNR one it is finite for v and refused for eps.
        var rd = RandomStream(seed: 6, purpose: .toy, index: 3)
        let data = (0..<300).map { _ in 0.5 + 0.3 * rd.nextNormal() }
        let std = Schedule.standard()
        func bound(_ s: Schedule, _ type: PredictionType) throws -> [Double] {
            let p = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.3)], schedule: s, sampleShape: [1], prediction: type)
            return try VariationalBound(schedule: s, predictor: p, variance: .posterior, decoder: .gaussian, steps: 20)
                .evaluate(x0: data, y: nil, seed: 1, firstIndex: 0).perExample
        }
        let viaV = try bound(std, .v), viaEps = try bound(std, .eps)
        for i in 0..<data.count { XCTAssertEqual(viaV[i], viaEps[i], accuracy: 1e-3 * max(1, abs(viaEps[i]))) }
        XCTAssertTrue(try bound(z, .v).allSatisfy { $0.isFinite })
        XCTAssertThrowsError(try bound(z, .eps)) { XCTAssertTrue("\($0)".contains("zero terminal SNR")) }

        // Through denoise (the plan as the tools build it): v-prediction starts AT the terminal level
        // (SampleJob keeps it for an x0/v predictor) and follows the exact chain above; eps-prediction
        // warns and starts below it. Neither gives NaN.
        let dir = temporaryDirectory()
        let sched = dir.appendingPathComponent("z.st").path
        try run("schedule", ["--zero-terminal-snr"]).write(to: URL(fileURLWithPath: sched))
        let dropped = try SamplingPlan(schedule: z, steps: 50, spacing: .trailing)
        XCTAssertEqual(dropped.droppedTerminal, 999)
        let expected = propagate(ts: dropped.timesteps, alphaBar: z.alphaBar, kind: .ddim, eps: gaussianEps(mu: 0.5, sigma: 0.3))
        for (spec, v) in [("gaussian mu=0.5 sigma=0.3 prediction=v", true), ("gaussian mu=0.5 sigma=0.3", false)] {
            let r = try runTool("denoise", ["--analytic", spec, "--schedule", sched, "--shape", "1", "-n", "4000", "--batch", "4000",
                                            "--sampler", "ddim", "--steps", "50", "--spacing", "trailing", "--quiet"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(r.stderr.contains("zero terminal SNR"), !v, r.stderr)
            let s = try xs(r.stdout)
            XCTAssertTrue(s.allSatisfy { $0.isFinite }, spec)
            assertMoments(s, v ? exact : expected, spec)
            if v { XCTAssertEqual(try decode(r.stdout)[0].metadata["start_t"], "999") }
        }
    }
}
