// Optimizer closed forms, the training loop (overfitting, the swiss roll), and the `train`
// executable: bit-identical resume, files readable by Python, bad input refused before training.
import Foundation
import XCTest
@testable import Shared

/// The swiss roll exactly as `tensor toy swissroll` defines it (Sources/Shared/IO/ToyData.swift on
/// branch io): u uniform, t = 1.5 pi (1 + 2u), (t cos t, t sin t) / (4.5 pi), plus N(0, 0.02^2)
/// jitter per coordinate, all from RandomStream(seed, .toy, index: i).
func swissRoll(n: Int, seed: UInt64, noise: Double = 0.02) -> [Float] {
    var out = [Float]()
    out.reserveCapacity(2 * n)
    for i in 0..<n {
        var r = RandomStream(seed: seed, purpose: .toy, index: UInt64(i))
        let t = 1.5 * Double.pi * (1 + 2 * r.nextUniform())
        var x = t * cos(t) / (4.5 * Double.pi), y = t * sin(t) / (4.5 * Double.pi)
        x += noise * Double(r.nextNormal())
        y += noise * Double(r.nextNormal())
        out.append(Float(x)); out.append(Float(y))
    }
    return out
}

final class TrainTests: XCTestCase {
    // MARK: optimizer

    func testAdamWTwoStepsClosedForm() {
        // 19 elements: two 8-lane blocks and a scalar tail of 3, all checked against the formula in Double.
        let n = 19
        let w0 = (0..<n).map { Double($0) * 0.25 - 2 }
        let p = Parameter(name: "w", shape: [n], value: w0.map { Float($0) })
        var c = OptimizerConfig()
        c.lr = 0.1; c.weightDecay = 0.01; c.clip = 0
        let opt = AdamW(store: p.store, config: c)   // a parameter made on its own has a store of its own
        let g1 = (0..<n).map { 0.5 * sin(Double($0) + 1) }, g2 = (0..<n).map { -0.3 * cos(Double($0)) }
        var w = w0, m = [Double](repeating: 0, count: n), v = m
        for (k, g) in [g1, g2].enumerated() {
            p.grad.assign(g.map { Float($0) })
            opt.update()
            // Loshchilov & Hutter 2019, Algorithm 2 with Adam's bias corrections (k + 1 updates).
            for i in 0..<n {
                let gi = Double(Float(g[i]))
                m[i] = 0.9 * m[i] + 0.1 * gi
                v[i] = 0.999 * v[i] + 0.001 * gi * gi
                let mHat = m[i] / (1 - pow(0.9, Double(k + 1))), vHat = v[i] / (1 - pow(0.999, Double(k + 1)))
                w[i] -= 0.1 * (mHat / (vHat.squareRoot() + 1e-8) + 0.01 * w[i])
                // Float arithmetic: where g1 and g2 have opposite signs m cancels, magnifying its
                // rounding (~6e-8) in m_hat / sqrt(v_hat) up to ~1e-5 of the step lr = 0.1: 1e-5 absolute.
                XCTAssertEqual(Double(p.value[i]), w[i], accuracy: 1e-5, "step \(k + 1), element \(i)")
            }
        }
        XCTAssertEqual(opt.step, 2)
        // The 8-lane blocks and the scalar tail compute the same IEEE operations: 19 one-element
        // parameters (all scalar) end with the same bits as the 19-element one.
        let singles = w0.enumerated().map { Parameter(name: "s\($0.offset)", shape: [1], value: [Float($0.element)]) }
        let scalars = singles.map { AdamW(store: $0.store, config: c) }
        for g in [g1, g2] {
            for (i, q) in singles.enumerated() { q.grad.assign([Float(g[i])]); scalars[i].update() }
        }
        XCTAssertEqual(singles.map { $0.value[0].bitPattern }, p.value.map(\.bitPattern))
        // The first step moves each weight by lr sign(g) (|g| >> eps) plus the decay lr lambda w.
        let q = Parameter(name: "q", shape: [1], value: [1])
        let one = AdamW(store: q.store, config: c)
        q.grad.assign([0.5])
        one.update()
        XCTAssertEqual(q.value[0], 1 - 0.1 - 0.001, accuracy: 1e-6)
    }

    func testWarmupClippingAndEMA() {
        let a = Parameter(name: "a", shape: [2], value: [0, 0]), b = Parameter(name: "b", shape: [1], value: [0])
        var c = OptimizerConfig()
        c.lr = 1e-3; c.warmup = 4; c.clip = 1.3
        let store = ParameterStore(packing: [a, b])
        let opt = AdamW(store: store, config: c)
        XCTAssertEqual((0..<6).map { opt.learningRate(at: $0) }, [0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3, 1e-3])
        // Global norm of [3, 4] and [12] is 13; clipping to 1.3 scales everything by 0.1.
        a.grad.assign([3, 4]); b.grad.assign([12])
        XCTAssertEqual(opt.clipGradients(), 13, accuracy: 1e-12)
        XCTAssertEqual(a.grad[0], 0.3, accuracy: 1e-6); XCTAssertEqual(a.grad[1], 0.4, accuracy: 1e-6)
        XCTAssertEqual(b.grad[0], 1.2, accuracy: 1e-6)
        opt.config.clip = 20
        a.grad.assign([3, 4]); b.grad.assign([12])
        opt.clipGradients()
        XCTAssertEqual(Array(a.grad), [3, 4]); XCTAssertEqual(Array(b.grad), [12])
        // EMA of a constant weight 1 starting from 0: shadow = 1 - prod_n d_n, d_n = min(decay, (1+n)/(10+n)).
        let ema = EMA(store: store, decay: 0.9)
        a.value.assign([1, 1]); b.value.assign([1])
        var prod = 1.0
        for n in 0..<30 {
            ema.update()
            prod *= min(0.9, Double(1 + n) / Double(10 + n))
            XCTAssertEqual(Double(ema.shadow[b.offset]), 1 - prod, accuracy: 1e-6, "update \(n)")
        }
        XCTAssertEqual(ema.effectiveDecay(at: 1000), 0.9)
    }

    // MARK: the loop

    func testTinyModelOverfitsTinyBatch() throws {
        // A fixed batch (x_t, t, eps): the network can memorise eps, so the loss must fall by
        // orders of magnitude; random targets rule out any shortcut through the input.
        let schedule = Schedule.standard()
        let net = MLP(dim: 2, width: 64, depth: 2, sinusoidDim: 32, classes: 0, learnSigma: false, seed: 1)
        var r = RandomStream(seed: 5, purpose: .noise, index: 0)
        let n = 8
        let x0 = swissRoll(n: n, seed: 3)
        let t = (0..<n).map { _ in r.nextInt(below: 1000) }
        let eps = (0..<(2 * n)).map { _ in r.nextNormal() }
        let xt = (0..<(2 * n)).map { i in Float(schedule.sqrtAlphaBar[t[i / 2]]) * x0[i] + Float(schedule.sqrtOneMinusAlphaBar[t[i / 2]]) * eps[i] }
        var c = OptimizerConfig()
        c.lr = 3e-3; c.clip = 0
        let opt = AdamW(store: net.store, config: c)
        let loss = DiffusionLoss(kind: .simple, schedule: schedule, decoder: .gaussian)
        var g = [Float]()
        var first = 0.0, last = 0.0
        for step in 0..<400 {
            let out = net.forward(xt, t: t, y: nil, training: true)
            let v = loss.evaluate(output: out, x0: x0, xt: xt, eps: eps, t: t, gradient: &g)
            if step == 0 { first = v.loss }
            last = v.loss
            for p in net.parameters { p.zeroGrad() }
            _ = net.backward(g)
            opt.update()
        }
        XCTAssertGreaterThan(first, 0.3)        // ~ E[eps^2] = 1 for an untrained net
        XCTAssertLessThan(last, first * 1e-2, "loss \(first) -> \(last)")
    }

    func testSwissRollMLPReachesTheLinearBaseline() throws {
        // Train the default MLP (width 128, depth 3) on 4096 swiss-roll points, 1000 steps of 128.
        let n = 4096
        let data = TrainingData(x: swissRoll(n: n, seed: 0), y: nil, sampleShape: [2])
        let schedule = Schedule.standard()
        var config = TrainConfig()
        config.batch = 128; config.optimizer.lr = 1e-3; config.seed = 1
        let net = try NetworkFactory.make(architecture: ["arch": "mlp", "dim": "2", "seed": "1"])
        let trainer = try Trainer(network: net, schedule: schedule, data: data, config: config)
        for _ in 0..<1000 { try trainer.trainStep() }
        net.store.values.assign(Array(trainer.ema.shadow))   // sample-time weights

        // Evaluate on 8192 fresh (x0, t, eps) triples against two references:
        //  * eps_theta = 0 gives E||eps||^2 / 2 = 1;
        //  * the best LINEAR predictor, i.e. the exact MMSE for Gaussian data with the roll's mean and
        //    covariance C: per eigenvalue l of C its MSE is abar l / (abar l + 1 - abar).
        // Only the non-Gaussian structure (a thin curve) lets a model beat the second, and only where
        // the noise is small (t < 100); that takes far longer than a unit test: measured at t < 100,
        // model vs baseline 0.864: 0.870 (1000 steps), 0.844 (4000), 0.773 (12000) -- see
        // docs/BENCHMARKS.md. The test checks what 1000 steps reliably reach.
        let test = swissRoll(n: 8192, seed: 99)
        var mean = [0.0, 0.0], cov = [0.0, 0.0, 0.0]
        for i in 0..<8192 { mean[0] += Double(test[2 * i]) / 8192; mean[1] += Double(test[2 * i + 1]) / 8192 }
        for i in 0..<8192 {
            let a = Double(test[2 * i]) - mean[0], b = Double(test[2 * i + 1]) - mean[1]
            cov[0] += a * a / 8191; cov[1] += a * b / 8191; cov[2] += b * b / 8191
        }
        let tr = cov[0] + cov[2], det = cov[0] * cov[2] - cov[1] * cov[1]
        let disc = (tr * tr / 4 - det).squareRoot()
        let eig = [tr / 2 - disc, tr / 2 + disc]
        func gaussianMSE(_ t: Int) -> Double {
            let ab = schedule.alphaBar[t]
            return eig.map { ab * $0 / (ab * $0 + 1 - ab) }.reduce(0, +) / 2
        }
        var r = RandomStream(seed: 42, purpose: .timestep, index: 0)
        var all = (model: 0.0, gauss: 0.0, count: 0), low = (model: 0.0, gauss: 0.0, count: 0)
        for chunk in 0..<8 {
            var xt = [Float](), eps = [Float](), ts = [Int]()
            for i in (chunk * 1024)..<(chunk * 1024 + 1024) {
                let t = i % 2 == 0 ? r.nextInt(below: 1000) : r.nextInt(below: 100)
                ts.append(t)
                for d in 0..<2 {
                    let e = r.nextNormal()
                    eps.append(e)
                    xt.append(Float(schedule.sqrtAlphaBar[t]) * test[2 * i + d] + Float(schedule.sqrtOneMinusAlphaBar[t]) * e)
                }
            }
            let out = net.forward(xt, t: ts, y: nil, training: false)
            for j in 0..<1024 {
                let se = (0..<2).map { d -> Double in let e = Double(out[2 * j + d] - eps[2 * j + d]); return e * e }.reduce(0, +) / 2
                if j % 2 == 0 { all.model += se; all.gauss += gaussianMSE(ts[j]); all.count += 1 }
                else { low.model += se; low.gauss += gaussianMSE(ts[j]); low.count += 1 }
            }
        }
        let allModel = all.model / Double(all.count), allGauss = all.gauss / Double(all.count)
        let lowModel = low.model / Double(low.count), lowGauss = low.gauss / Double(low.count)
        print("swiss roll: L_simple \(allModel) (Gaussian baseline \(allGauss)); t < 100: \(lowModel) (baseline \(lowGauss))")
        // Measured (seed 1, 1000 steps): L_simple 0.181 over all t (linear baseline 0.175, eps = 0: 1.0);
        // at t < 100: 0.870 (baseline 0.864). So: far below the trivial predictor, and within 0.02 of
        // the best linear one everywhere (an untrained or mis-wired model is at ~1).
        XCTAssertLessThan(allModel, 0.2)
        XCTAssertLessThan(allModel, allGauss + 0.02)
        XCTAssertLessThan(lowModel, lowGauss + 0.05)
        XCTAssertLessThan(lowModel, 0.92)
    }

    func testHybridLossTrainsTheVariance() throws {
        // Two 600-step runs on the swiss roll, identical but for lambda: 0.001 (hybrid) and 0 (v gets
        // exactly zero gradient, so it only drifts through the shared hidden layers). L_t in bits/dim
        // on a fixed evaluation set (one uniform t per example) must be clearly lower with lambda > 0:
        // that difference is what training v buys. L_simple must be about the same (lambda is small).
        let data = TrainingData(x: swissRoll(n: 4096, seed: 0), y: nil, sampleShape: [2])
        let schedule = Schedule.standard()
        let test = swissRoll(n: 2048, seed: 77)
        var r = RandomStream(seed: 9, purpose: .timestep, index: 0)
        let ts = (0..<2048).map { _ in r.nextInt(below: 1000) }
        let eps = (0..<4096).map { _ in r.nextNormal() }
        let xt = (0..<4096).map { i in Float(schedule.sqrtAlphaBar[ts[i / 2]]) * test[i] + Float(schedule.sqrtOneMinusAlphaBar[ts[i / 2]]) * eps[i] }
        func run(lambda: Double) throws -> (LossValue, LossValue) {
            var config = TrainConfig()
            config.batch = 128; config.optimizer.lr = 1e-3; config.seed = 2; config.loss = .hybrid
            config.vlbWeight = lambda; config.emaDecay = 0
            let net = try NetworkFactory.make(architecture: ["arch": "mlp", "dim": "2", "learn_sigma": "true", "seed": "2"])
            let trainer = try Trainer(network: net, schedule: schedule, data: data, config: config)
            func evaluate() -> LossValue {
                var g = [Float]()
                let out = net.forward(xt, t: ts, y: nil, training: false)
                return trainer.loss.evaluate(output: out, x0: test, xt: xt, eps: eps, t: ts, gradient: &g)
            }
            let before = evaluate()
            for _ in 0..<600 { try trainer.trainStep() }
            return (before, evaluate())
        }
        let (before, hybrid) = try run(lambda: 0.001)
        let (_, frozen) = try run(lambda: 0)
        print("hybrid: L_t (bits/dim) init \(before.vlbTerm), lambda 0.001: \(hybrid.vlbTerm), lambda 0: \(frozen.vlbTerm); L_simple \(hybrid.simple) vs \(frozen.simple)")
        // Measured: init 0.0083, lambda 0.001 -> 0.00063, lambda 0 -> 0.00101 bits/dim (ratio 0.62);
        // L_simple 0.1773 in both runs.
        XCTAssertLessThan(hybrid.vlbTerm, 0.7 * frozen.vlbTerm)
        XCTAssertEqual(hybrid.simple, frozen.simple, accuracy: 0.02)
        XCTAssertLessThan(hybrid.simple, 0.25)
    }

    // MARK: the executable

    func rollFrames(n: Int, labels: Bool) -> [Frame] {
        var f = Frame(metadata: ["kind": "batch"])
        f["x"] = Tensor(swissRoll(n: n, seed: 4), shape: [n, 2])
        if labels { f["y"] = Tensor((0..<n).map { Int64($0 % 3) }, shape: [n]) }
        return [f]
    }

    func testResumeIsBitIdentical() throws {
        let dir = temporaryDirectory()
        let data = dir.appendingPathComponent("roll.st").path
        try Frame.save(rollFrames(n: 500, labels: true), path: data)
        let common = ["--data", data, "--batch", "32", "--width", "32", "--depth", "2", "--warmup", "10",
                      "--ema", "0.99", "--loss", "hybrid", "--seed", "3", "--quiet"]
        let a = dir.appendingPathComponent("a.st").path, b = dir.appendingPathComponent("b.st").path
        let ck = dir.appendingPathComponent("ck.st").path
        // 30 steps of 32 cover 960 examples: the run crosses an epoch boundary of the 500 points.
        var r = try runTool("train", common + ["--steps", "30", "-o", a])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runTool("train", common + ["--steps", "15", "--checkpoint", ck, "--every", "7", "-o", b])
        XCTAssertEqual(r.status, 0, r.stderr)
        let c = try Frame.load(path: ck)
        XCTAssertEqual(c.kind, "checkpoint")
        XCTAssertEqual(c.metadata["step"], "15")
        r = try runTool("train", ["--data", data, "--resume", ck, "--steps", "30", "-o", b, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let fa = try Frame.load(path: a), fb = try Frame.load(path: b)
        XCTAssertEqual(fa.names, fb.names)
        XCTAssertEqual(fa.metadata["steps"], "30"); XCTAssertEqual(fb.metadata["steps"], "30")
        XCTAssertEqual(fa.metadata["classes"], "3")      // inferred from max(y) + 1
        for name in fa.names {
            guard case .f32(let x) = fa[name]!.storage, case .f32(let y) = fb[name]!.storage else { continue }
            XCTAssertEqual(x.map(\.bitPattern), y.map(\.bitPattern), "tensor \(name) differs after resume")
        }
        // The model loads back: EMA weights by default, raw on request, learned sigma, conditional.
        let loaded = try ModelFile.load(path: a)
        XCTAssertEqual(loaded.classes, 3)
        XCTAssertEqual(loaded.loss, .hybrid)
        XCTAssertEqual(loaded.network.outputShape, [4])
        XCTAssertEqual(loaded.schedule.beta, Schedule.standard().beta)
        for p in loaded.network.parameters { XCTAssertEqual(Array(p.value), fa["ema." + p.name]!.floats) }
        let raw = try ModelFile.load(path: a, weights: .raw)
        for p in raw.network.parameters { XCTAssertEqual(Array(p.value), fa["raw." + p.name]!.floats) }
        // Repeating the original command with --resume continues it: the same flags are accepted.
        r = try runTool("train", common + ["--steps", "30", "--checkpoint", ck, "--every", "7", "-o", b, "--resume", ck])
        XCTAssertEqual(r.status, 0, r.stderr)
        let fr = try Frame.load(path: b)
        for name in fa.names {
            guard case .f32(let x) = fa[name]!.storage, case .f32(let y) = fr[name]!.storage else { continue }
            XCTAssertEqual(x.map(\.bitPattern), y.map(\.bitPattern), "tensor \(name) differs after a resume with the same flags")
        }
        // The same for a small U-Net on 8x8 images: hybrid loss (discretised decoder), classes,
        // dropout 0.1 (masks keyed by step), warm-up, 2 levels with attention at 4x4.
        var img = Frame(metadata: ["kind": "batch"])
        var rr = RandomStream(seed: 8, purpose: .toy, index: 0)
        img["x"] = Tensor((0..<(40 * 64)).map { _ in Float(rr.nextInt(below: 256)) / 127.5 - 1 }, shape: [40, 1, 8, 8])
        img["y"] = Tensor((0..<40).map { Int64($0 % 4) }, shape: [40])
        let imgData = dir.appendingPathComponent("img.st").path
        try Frame.save([img], path: imgData)
        let ucommon = ["--data", imgData, "--batch", "6", "--channels", "8", "--mults", "1,2", "--res-blocks", "1", "--attn", "4",
                       "--dropout", "0.1", "--warmup", "3", "--loss", "hybrid", "--quiet"]
        let ua = dir.appendingPathComponent("ua.st").path, ub = dir.appendingPathComponent("ub.st").path
        let uck = dir.appendingPathComponent("uck.st").path
        r = try runTool("train", ucommon + ["--steps", "10", "-o", ua])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runTool("train", ucommon + ["--steps", "5", "--checkpoint", uck, "-o", ub])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runTool("train", ["--data", imgData, "--resume", uck, "--steps", "10", "-o", ub, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let fua = try Frame.load(path: ua), fub = try Frame.load(path: ub)
        XCTAssertEqual(fua.metadata["arch.arch"], "unet")
        XCTAssertEqual(fua.metadata["decoder"], "discretized-8bit")
        XCTAssertEqual(fua.names, fub.names)
        for name in fua.names {
            guard case .f32(let x) = fua[name]!.storage, case .f32(let y) = fub[name]!.storage else { continue }
            XCTAssertEqual(x.map(\.bitPattern), y.map(\.bitPattern), "U-Net tensor \(name) differs after resume")
        }

        // Resuming with a value the checkpoint fixes changed is refused, naming both values; the
        // U-Net checkpoint with the U-Net flags repeated is accepted.
        for (args, message) in [(["--lr", "1"], "--lr 1.0 differs from the checkpoint's 0.001"),
                                (["--width", "64"], "--width 64 differs from the checkpoint's 32"),
                                (["--loss", "simple"], "--loss simple differs from the checkpoint's hybrid"),
                                (["--seed", "4"], "--seed 4 differs from the checkpoint's 3"),
                                (["--channels", "8"], "--channels does not apply to the checkpoint's MLP"),
                                (["--classifier"], "--classifier given, but the checkpoint trains a noise predictor")] {
            r = try runTool("train", ["--data", data, "--resume", ck, "--steps", "30", "-o", b] + args)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.hasPrefix("train: ") && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        r = try runTool("train", ucommon + ["--steps", "10", "--checkpoint", uck, "-o", ub, "--resume", uck])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testUNetLearnsTwoPatternsWithTheHybridLoss() throws {
        // Two fixed 8x8 binary patterns (a square, stripes): x_0 is one of two points, so eps is almost
        // determined by x_t at most t and the loss must fall far below its initial ~0.8. Through the
        // executable and the --log CSV, with the hybrid loss (discretised decoder at t = 0).
        var a = [Float](repeating: -1, count: 64), b = a
        for r in 2..<6 { for c in 2..<6 { a[r * 8 + c] = 1 } }
        for r in 0..<8 { for c in stride(from: 0, to: 8, by: 2) { b[r * 8 + c] = 1 } }
        var f = Frame(metadata: ["kind": "batch"])
        f["x"] = Tensor((0..<32).flatMap { _ in a + b }, shape: [64, 1, 8, 8])
        let dir = temporaryDirectory()
        let log = dir.appendingPathComponent("log.csv").path
        let r = try runTool("train", ["--steps", "200", "--batch", "16", "--channels", "16", "--mults", "1,2", "--res-blocks", "1",
                                      "--attn", "4", "--dropout", "0", "--lr", "2e-3", "--loss", "hybrid", "--log", log,
                                      "-o", dir.appendingPathComponent("m.st").path, "--quiet"], stdin: try encode([f]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.first, "step,loss")
        XCTAssertEqual(lines.count, 201)
        let losses = lines.dropFirst().map { Double($0.split(separator: ",")[1])! }
        let first = losses.prefix(10).reduce(0, +) / 10, last = losses.suffix(50).reduce(0, +) / 50
        // Measured: 0.77 over the first 10 steps, 0.048 over the last 50.
        XCTAssertGreaterThan(first, 0.4)
        XCTAssertLessThan(last, 0.1)
    }

    func testFilesLoadInPython() throws {
        // python3 as found on PATH (a pyenv or venv may hold safetensors where /usr/bin's does not).
        let probe = try runProcess("/usr/bin/env", ["python3", "-c", "import safetensors.numpy, numpy"])
        guard probe.status == 0 else { throw XCTSkip("python3 with safetensors and numpy not found on PATH") }
        let dir = temporaryDirectory()
        let data = dir.appendingPathComponent("roll.st").path
        try Frame.save(rollFrames(n: 200, labels: false), path: data)
        let model = dir.appendingPathComponent("m.safetensors").path, ck = dir.appendingPathComponent("c.safetensors").path
        let r = try runTool("train", ["--data", data, "--steps", "5", "--batch", "16", "--width", "16", "--depth", "1",
                                      "--checkpoint", ck, "-o", model, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let script = """
        import sys, json
        from safetensors.numpy import load_file
        from safetensors import safe_open
        out = {}
        for path in sys.argv[1:]:
            t = load_file(path)
            with safe_open(path, framework="np") as f: meta = f.metadata()
            out[path] = {"meta": meta, "tensors": {k: [str(v.dtype), list(v.shape)] for k, v in t.items()}}
        print(json.dumps(out))
        """
        let p = try runProcess("/usr/bin/env", ["python3", "-c", script, model, ck])
        XCTAssertEqual(p.status, 0, p.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as! [String: [String: Any]]
        let net = try ModelFile.load(path: model).network
        for (path, kind) in [(model, "model"), (ck, "checkpoint")] {
            let meta = json[path]!["meta"] as! [String: String]
            let tensors = json[path]!["tensors"] as! [String: [Any]]
            XCTAssertEqual(meta["kind"], kind)
            XCTAssertEqual(meta["arch.arch"], "mlp")
            XCTAssertEqual(meta["data_shape"], "2")
            XCTAssertEqual(meta["steps"], "5")
            XCTAssertEqual(tensors["schedule.beta"]![0] as? String, "float64")
            XCTAssertEqual(tensors["schedule.beta"]![1] as? [Int], [1000])
            var expected = Set(["schedule.beta"])
            for p in net.parameters {
                var names = ["ema.", "raw."]
                if kind == "checkpoint" { names += ["adam.m.", "adam.v."] }
                for prefix in names {
                    expected.insert(prefix + p.name)
                    XCTAssertEqual(tensors[prefix + p.name]?[0] as? String, "float32", prefix + p.name)
                    XCTAssertEqual(tensors[prefix + p.name]?[1] as? [Int], p.shape, prefix + p.name)
                }
            }
            XCTAssertEqual(Set(tensors.keys), expected)
            if kind == "checkpoint" { XCTAssertEqual(meta["step"], "5") }
        }
    }

    func testBadInputsFailBeforeTraining() throws {
        let dir = temporaryDirectory()
        let out = dir.appendingPathComponent("never.st").path
        func frame(_ x: [Float], _ shape: [Int], y: Tensor? = nil) -> Frame {
            var f = Frame(metadata: ["kind": "batch"])
            f["x"] = Tensor(x, shape: shape)
            if let y { f["y"] = y }
            return f
        }
        var noX = Frame(metadata: ["kind": "batch"])
        noX["z"] = Tensor([Float](repeating: 0, count: 4), shape: [2, 2])
        let x4 = [Float](repeating: 0.1, count: 8)
        var cases: [(String, [Frame], [String], String)] = [
            ("empty stream", [], [], "no training data"),
            ("no x", [noX], [], "no tensor 'x'"),
            ("mixed shapes", [frame(x4, [4, 2]), frame([Float](repeating: 0, count: 12), [4, 3])], [], "mixed shapes"),
            ("label out of range", [frame(x4, [4, 2], y: Tensor([Int64(0), 1, 5, 2], shape: [4]))], ["--classes", "3"], "out of range"),
            ("negative label", [frame(x4, [4, 2], y: Tensor([Int64(0), -1, 1, 2], shape: [4]))], [], "negative class label"),
            ("float labels", [frame(x4, [4, 2], y: Tensor([Float](repeating: 1, count: 4), shape: [4]))], [], "must be integers"),
            ("labels in one frame only", [frame(x4, [4, 2], y: Tensor([Int64](repeating: 1, count: 4), shape: [4])), frame(x4, [4, 2])], [], "earlier frames"),
            ("integer x", [{ var f = Frame(metadata: [:]); f["x"] = Tensor([Int64](repeating: 1, count: 4), shape: [2, 2]); return f }()], [], "must be F32"),
        ]
        let good = [frame(x4, [4, 2])]
        cases.append(("output directory missing", good, ["-o", dir.appendingPathComponent("no/such/dir/m.st").path], "does not exist"))
        cases.append(("--classifier without labels", good, ["--classifier"], "needs labels"))
        cases.append(("--classifier with one class", [frame(x4, [4, 2], y: Tensor([Int64](repeating: 0, count: 4), shape: [4]))],
                      ["--classifier"], "a classifier needs labels 'y' with at least 2 classes, got 1"))
        cases.append(("--arch unet on vectors", good, ["--arch", "unet"], "--arch unet: a U-Net needs image samples"))
        cases.append(("--mults too deep for the image", [frame([Float](repeating: 0, count: 2 * 64), [2, 1, 8, 8])],
                      ["--mults", "1,2,2,2,2"], "--mults: image size 8x8 is not divisible by 16"))
        cases.append(("--attn at no level", [frame([Float](repeating: 0, count: 2 * 64), [2, 1, 8, 8])],
                      ["--attn", "5"], "--attn 5: no level has feature maps of size 5"))
        cases.append(("--width on images", [frame([Float](repeating: 0, count: 2 * 64), [2, 1, 8, 8])],
                      ["--width", "5"], "--width does not apply to the U-Net"))
        cases.append(("too many parameters", good, ["--width", "60000", "--depth", "64"], "more than the limit"))
        cases.append(("--fourier out of range", good, ["--fourier", "17"], "--fourier: 17 Fourier octaves: must lie in 0 ... 16"))
        cases.append(("--fourier on images", [frame([Float](repeating: 0, count: 2 * 64), [2, 1, 8, 8])],
                      ["--fourier", "4"], "--fourier does not apply to the U-Net"))
        cases.append(("--fourier for a classifier", [frame(x4, [4, 2], y: Tensor([Int64]([0, 1, 0, 1]), shape: [4]))],
                      ["--classifier", "--fourier", "4"], "--fourier does not apply to the classifier's MLP encoder"))
        for (what, frames, args, message) in cases {
            let start = Date()
            // 10^9 steps: had training started, the test would not finish.
            let r = try runTool("train", ["--steps", "1000000000", "-o", out] + args, stdin: try encode(frames))
            XCTAssertNotEqual(r.status, 0, what)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(what): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("train: ") && r.stderr.contains(message), "\(what): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), what)
            XCTAssertLessThan(Date().timeIntervalSince(start), 10, what)
        }
    }

    func testFlagErrorsAreUsageErrors() throws {
        // Rules between flags and bounds of single values are checked by the option groups'
        // validate() before anything is read: argument errors, as ArgumentParser prints them.
        for (args, message) in [(["--classifier", "--loss", "hybrid"], "--loss hybrid does not apply to --classifier"),
                                (["--lr=-1"], "--lr: learning rate -1.0 must be a finite number > 0"),
                                (["--ema", "1"], "--ema: EMA decay 1.0 must lie in [0, 1)"),
                                (["--p-uncond", "2"], "--p-uncond: label dropout probability 2.0 must lie in [0, 1]"),
                                (["--clip", "nan"], "--clip: gradient clipping norm nan must be a finite number >= 0"),
                                (["--batch", "0"], "--batch: batch size 0 must lie in 1 ... 65536"),
                                (["--classifier", "--classes", "1"], "--classes: a classifier needs labels 'y' with at least 2 classes, got 1"),
                                (["--arch", "mlp", "--channels", "8"], "--channels is a U-Net flag; it does not apply to --arch mlp"),
                                (["--mults", "1,x"], "--mults '1,x': expected comma-separated integers"),
                                (["--every", "5"], "--every needs --checkpoint FILE")] {
            let r = try runTool("train", ["--steps", "1000000000", "-o", "/dev/null"] + args, stdin: Data())
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }

    func testNonFiniteLossStopsAndKeepsTheCheckpoint() throws {
        // lr = 1e30: AdamW's first update moves every weight by ~1e30, so step 2 overflows.
        let dir = temporaryDirectory()
        let data = dir.appendingPathComponent("roll.st").path
        try Frame.save(rollFrames(n: 64, labels: false), path: data)
        let ck = dir.appendingPathComponent("ck.st").path, out = dir.appendingPathComponent("m.st").path
        let r = try runTool("train", ["--data", data, "--lr", "1e30", "--clip", "0", "--steps", "50", "--batch", "16",
                                      "--checkpoint", ck, "--every", "1", "-o", out, "--quiet"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("loss is") || r.stderr.contains("gradient norm is"), r.stderr)
        XCTAssertTrue(r.stderr.contains("last checkpoint (step 1)"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let c = try Frame.load(path: ck)
        XCTAssertEqual(c.metadata["step"], "1")
        for (name, t) in c.tensors where name.hasPrefix("raw.") { XCTAssertTrue(t.floats.allSatisfy(\.isFinite), name) }
    }
}

/// Runs any program (python3) and returns its status and output.
func runProcess(_ path: String, _ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    var o = Data(), e = Data()
    let group = DispatchGroup()
    group.enter(); DispatchQueue.global().async { o = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter(); DispatchQueue.global().async { e = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.wait()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

final class TrainClassifierTests: XCTestCase {
    func testCrossEntropyAndGuidanceGradientsAgainstFiniteDifferences() throws {
        // Cross-entropy: d/d logits = (softmax - onehot) / n, checked by central differences in Double.
        let logits: [Float] = [0.3, -1.2, 2.0, 0.5, 0.1, -0.4]
        let labels = [2, 0]
        var g = [Float]()
        let (ce, acc) = Losses.crossEntropy(logits: logits, labels: labels, classes: 3, gradient: &g)
        // Row 0: -log softmax = log(e^.3 + e^-1.2 + e^2) - 2; row 1: log(e^.5 + e^.1 + e^-.4) - .5.
        let expected = (log(exp(0.3) + exp(-1.2) + exp(2.0)) - 2 + log(exp(0.5) + exp(0.1) + exp(-0.4)) - 0.5) / 2
        XCTAssertEqual(ce, expected, accuracy: 1e-6)
        XCTAssertEqual(acc, 1)   // both argmaxes are the labels
        for j in 0..<6 {
            var up = logits, down = logits, s = [Float]()
            up[j] += 1e-2; down[j] -= 1e-2
            let fd = (Losses.crossEntropy(logits: up, labels: labels, classes: 3, gradient: &s).loss
                - Losses.crossEntropy(logits: down, labels: labels, classes: 3, gradient: &s).loss) / Double(up[j] - down[j])
            XCTAssertEqual(Double(g[j]), fd, accuracy: 1e-4)   // O(h^2) = 1e-4 x third derivative <= 1
        }

        // grad_x log p(y | x_t, t) through a small classifier, against central differences of log p.
        let net = try NoiseAwareClassifier(inShape: [3], width: 16, depth: 2, sinusoidDim: 8, classes: 4, seed: 2)
        var r = RandomStream(seed: 1, purpose: .noise, index: 0)
        let x = (0..<(5 * 3)).map { _ in r.nextNormal() }
        let t = [0, 10, 200, 500, 999], y = [0, 1, 2, 3, 1]
        let (lp, grad) = classifierLogProbGradient(net, x: x, t: t, y: y)
        XCTAssertTrue(lp.allSatisfy { $0 < 0 })
        for p in net.parameters { XCTAssertTrue(p.grad.allSatisfy { $0 == 0 }) }
        // Float network, log p in Double: h = 1e-2 keeps the logits' rounding (~1e-7) small next to
        // the difference, truncation O(h^2) ~ 1e-4 relative: tolerance 1e-2 of the largest gradient.
        var maxAn: Float = 0, maxErr = 0.0
        for j in 0..<(5 * 3) {
            var up = x, down = x
            up[j] += 1e-2; down[j] -= 1e-2
            let s = j / 3
            let fd = (classifierLogProbGradient(net, x: up, t: t, y: y).logProb[s]
                - classifierLogProbGradient(net, x: down, t: t, y: y).logProb[s]) / Double(up[j] - down[j])
            maxAn = max(maxAn, abs(grad[j]))
            maxErr = max(maxErr, abs(fd - Double(grad[j])))
        }
        XCTAssertGreaterThan(maxAn, 1e-3)
        XCTAssertLessThanOrEqual(maxErr, 1e-2 * Double(maxAn) + 1e-5)
    }

    func testUNetClassifierInputGradientAgainstFiniteDifferences() throws {
        // grad_x log p(y | x_t, t) through the U-Net-encoder classifier (2 levels, 8x8, 2 channels):
        // central differences of log p in Double on 24 random input coordinates. Float network with
        // GroupNorm: h = 1e-2 keeps rounding noise (~1e-6 in log p) small against the difference;
        // tolerance 2e-2 of the largest gradient checked plus 1e-4.
        let net = try NoiseAwareUNetClassifier(inShape: [2, 8, 8], channels: 8, mults: [1, 2], resBlocks: 1, groups: 4, classes: 3, seed: 5)
        // The last conv of each res block starts at zero (the U-Net's init); perturb every weight so
        // the whole path is exercised.
        var r = RandomStream(seed: 12, purpose: .init_, index: 0)
        for p in net.parameters { for i in 0..<p.count { p.value[i] += 0.05 * r.nextNormal() } }
        let n = 3
        let x = (0..<(n * 128)).map { _ in r.nextNormal() }
        let t = [3, 400, 999], y = [0, 2, 1]
        let (_, grad) = classifierLogProbGradient(net, x: x, t: t, y: y)
        var maxAn: Float = 0, maxErr = 0.0
        for _ in 0..<24 {
            let j = r.nextInt(below: n * 128), s = j / 128
            var up = x, down = x
            up[j] += 1e-2; down[j] -= 1e-2
            let fd = (classifierLogProbGradient(net, x: up, t: t, y: y).logProb[s]
                - classifierLogProbGradient(net, x: down, t: t, y: y).logProb[s]) / Double(up[j] - down[j])
            maxAn = max(maxAn, abs(grad[j]))
            maxErr = max(maxErr, abs(fd - Double(grad[j])))
        }
        XCTAssertGreaterThan(maxAn, 1e-4)
        XCTAssertLessThanOrEqual(maxErr, 2e-2 * Double(maxAn) + 1e-4)
        // Rebuilds from its architecture with the same parameter names and shapes.
        let again = try makeAnyNetwork(architecture: net.architecture)
        XCTAssertEqual(again.parameters.map(\.name), net.parameters.map(\.name))
        XCTAssertEqual(again.parameters.map(\.shape), net.parameters.map(\.shape))
    }

    func testUNetClassifierTrainsOnImages() throws {
        // Two 8x8 patterns (label 0: a square, 1: stripes) through `train --classifier` (U-Net encoder by
        // default for images). At t = 10 the noise (std 0.04) cannot hide a +-1 pattern: accuracy must
        // be ~1; at t = 999 (sqrt(abar) = 0.006) x_t carries almost nothing: accuracy ~0.5.
        var a = [Float](repeating: -1, count: 64), b = a
        for r in 2..<6 { for c in 2..<6 { a[r * 8 + c] = 1 } }
        for r in 0..<8 { for c in stride(from: 0, to: 8, by: 2) { b[r * 8 + c] = 1 } }
        var f = Frame(metadata: ["kind": "batch"])
        f["x"] = Tensor((0..<32).flatMap { _ in a + b }, shape: [64, 1, 8, 8])
        f["y"] = Tensor((0..<64).map { Int64($0 % 2) }, shape: [64])
        let dir = temporaryDirectory()
        let out = dir.appendingPathComponent("c.st").path
        let r = try runTool("train", ["--classifier", "--steps", "200", "--batch", "16", "--channels", "16", "--mults", "1,2",
                                      "-o", out, "--quiet"], stdin: try encode([f]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let loaded = try ModelFile.load(path: out)
        XCTAssertEqual(loaded.metadata["arch.arch"], "classifier-unet")
        let s = loaded.schedule
        func accuracy(_ t: Int) -> Double {
            var rr = RandomStream(seed: 1, purpose: .noise, index: UInt64(t))
            var xt = [Float](), labels = [Int]()
            for i in 0..<200 {
                let img = i % 2 == 0 ? a : b
                labels.append(i % 2)
                xt += img.map { Float(s.sqrtAlphaBar[t]) * $0 + Float(s.sqrtOneMinusAlphaBar[t]) * rr.nextNormal() }
            }
            let logits = loaded.network.forward(xt, t: [Int](repeating: t, count: 200), y: nil, training: false)
            return Double((0..<200).filter { (logits[2 * $0 + 1] > logits[2 * $0] ? 1 : 0) == labels[$0] }.count) / 200
        }
        let low = accuracy(10), high = accuracy(999)
        print("U-Net classifier accuracy: t=10 \(low), t=999 \(high)")
        XCTAssertGreaterThan(low, 0.97)
        XCTAssertLessThan(high, 0.65)   // 200 fair coin flips: 0.5 +- 0.035; 0.65 is > 4 sigma
    }

    func testClassifierTrainsOnNoisedData() throws {
        // Two classes: the swiss-roll points with x > 0 (label 1) and x <= 0 (label 0).
        let n = 2000
        let xs = swissRoll(n: n, seed: 6)
        var f = Frame(metadata: ["kind": "batch"])
        f["x"] = Tensor(xs, shape: [n, 2])
        f["y"] = Tensor((0..<n).map { Int64(xs[2 * $0] > 0 ? 1 : 0) }, shape: [n])
        let dir = temporaryDirectory()
        let out = dir.appendingPathComponent("clf.safetensors").path
        let r = try runTool("train", ["--classifier", "--steps", "400", "--batch", "128", "--width", "64", "-o", out, "--quiet"],
                            stdin: try encode([f]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let loaded = try ModelFile.load(path: out)
        XCTAssertEqual(loaded.metadata["kind"], "classifier")
        XCTAssertEqual(loaded.network.outputShape, [2])
        // Accuracy on fresh points: at t <= 20 the label is a near-deterministic function of x_t
        // (only points within ~0.1 of x = 0 are ambiguous: a few percent); at t = 999, x_t carries
        // almost no information (sqrt(abar) = 0.006), so accuracy falls to the majority rate.
        let test = swissRoll(n: 1000, seed: 60)
        let schedule = loaded.schedule
        func accuracy(_ tv: Int) -> Double {
            var r = RandomStream(seed: 3, purpose: .noise, index: UInt64(tv))
            let xt = test.map { Float(schedule.sqrtAlphaBar[tv]) * $0 + Float(schedule.sqrtOneMinusAlphaBar[tv]) * r.nextNormal() }
            let logits = loaded.network.forward(xt, t: [Int](repeating: tv, count: 1000), y: nil, training: false)
            var correct = 0
            for i in 0..<1000 {
                let label = test[2 * i] > 0 ? 1 : 0
                if (logits[2 * i + 1] > logits[2 * i] ? 1 : 0) == label { correct += 1 }
            }
            return Double(correct) / 1000
        }
        // Resume: 200 + 200 steps give the same classifier bit for bit.
        let ck = dir.appendingPathComponent("ck.st").path, resumed = dir.appendingPathComponent("r.st").path
        let data = try encode([f])
        var rr = try runTool("train", ["--classifier", "--steps", "200", "--batch", "128", "--width", "64",
                                       "--checkpoint", ck, "-o", resumed, "--quiet"], stdin: data)
        XCTAssertEqual(rr.status, 0, rr.stderr)
        rr = try runTool("train", ["--resume", ck, "--steps", "400", "-o", resumed, "--quiet"], stdin: data)
        XCTAssertEqual(rr.status, 0, rr.stderr)
        let fa = try Frame.load(path: out), fb = try Frame.load(path: resumed)
        XCTAssertEqual(fb.kind, "classifier")
        for name in fa.names where name.hasPrefix("raw.") || name.hasPrefix("ema.") {
            XCTAssertEqual(fa[name]!.floats.map(\.bitPattern), fb[name]!.floats.map(\.bitPattern), name)
        }

        let low = accuracy(10), high = accuracy(999)
        let majority = Double((0..<1000).filter { test[2 * $0] > 0 }.count) / 1000
        print("classifier accuracy: t=10 \(low), t=999 \(high) (majority \(max(majority, 1 - majority)))")
        XCTAssertGreaterThan(low, 0.9)
        XCTAssertLessThan(high, max(majority, 1 - majority) + 0.06)
    }
}
