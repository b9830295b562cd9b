// The few-step solvers (Euler, Euler ancestral, Heun, DPM-Solver++ 2M and its SDE variant), Karras
// spacing and dynamic thresholding: convergence orders against the exact probability-flow ODE of
// Gaussian data, agreement with diffusers' schedulers (fixtures from scripts/diffusers-reference.py),
// identities between samplers, and the denoise tool end to end.
import Foundation
import XCTest
@testable import Shared

final class SolverTests: XCTestCase {
    let linear = Schedule.standard()
    let newKinds: [SamplerKind] = [.euler, .eulerAncestral, .heun, .dpmpp2m, .dpmpp2mSDE, .unipc]

    /// Runs levels K-1 ... `last` of a solver (the caller's loop of Sample.swift, without the corrector).
    func runLevels(_ solver: inout any ReverseSolver, x: inout [Float], predictor: EpsPredictor, seed: UInt64 = 1,
                   downTo last: Int = 0) throws {
        let plan = solver.plan, n = x.count / predictor.sampleSize, d = predictor.sampleSize
        var noise = Sampling.streams(count: n, seed: seed, firstIndex: 0)
        var x0 = [Float](repeating: 0, count: x.count)
        let evaluate: (_ x: [Float], _ level: Int) throws -> Prediction = { xs, level in
            try Sampling.predict(predictor, x: xs, t: Array(repeating: plan.timesteps[level], count: n), y: nil, variance: false)
        }
        for i in stride(from: plan.stepCount - 1, through: last, by: -1) {
            try solver.step(level: i, x: &x, prediction: try evaluate(x, i), sampleSize: d, x0: &x0, noise: &noise, evaluate: evaluate)
        }
    }

    // MARK: convergence order

    func testConvergenceOrderOnTheProbabilityFlowODE() throws {
        // Data N(mu, s^2) per coordinate, exact eps*. In VE coordinates X = x / sqrt(abar), sigma =
        // sqrt((1 - abar)/abar), the marginal at sigma is N(mu, s^2 + sigma^2) and the probability-flow ODE
        // dX/dsigma = -sigma grad log p = sigma (X - mu) / (s^2 + sigma^2) has the solution
        //   X(sigma') - mu = (X(sigma) - mu) sqrt(s^2 + sigma'^2) / sqrt(s^2 + sigma^2).
        // It is autonomous in sigma: the exact map between two levels depends on their abar only, not on how
        // abar varies between timesteps, so the discrete schedule needs no interpolation for the reference.
        // What the discrete schedule does fix is the grid: with T = 1281 and linspace spacing, K - 1 = 10, 20,
        // ..., 320 give t = 0, 1280/(K-1), ... exactly nested, so halving the step refines one smooth map
        // j/K -> sigma_t. We stop at level 0 (t = 0, sigma = 0.01) and compare with the exact X(sigma_0): the
        // last jump to x_0 (x0^ for every solver, no ODE step) is outside the ODE.
        // Bands: an order-p method's error ratio on halving tends to 2^p; the higher-order terms shift it by
        // O(1/K), hence [1.6, 2.6] for p = 1 and [3, 5.5] for p = 2. DPM-Solver++ 2M reaches its asymptotic
        // regime later here (its first step is first order over lambda = -6.4 ... and the step ratio r
        // varies): its errors at K = 11, 21, 41 are 0.14, 0.19, 0.11 (float64 replica), so its ladder is
        // 81, 161, 321 (errors 0.038, 0.010, 0.0026: ratios 3.6, 3.9). UniPC likewise (0.034, 0.0081, 0.0017:
        // 4.2, 4.7); what we measure at level 0 is its predictor's output (UniC would correct it at the start
        // of the last step), of order 2. Float32 rounding (~1e-6) is far below.
        let sched = try Schedule.make(.linear, T: 1281)
        let mu = 0.5, s = 0.3
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: mu, sigma: s)], schedule: sched, sampleShape: [1])
        let start: [Float] = [-2.1, -0.6, 0.1, 0.8, 1.9]
        let abarT = sched.alphaBar[1280], abar0 = sched.alphaBar[0]
        let sigmaT = ((1 - abarT) / abarT).squareRoot(), sigma0 = ((1 - abar0) / abar0).squareRoot()
        let exact = start.map { xT -> Double in
            let X = Double(xT) / abarT.squareRoot()
            return (mu + (X - mu) * ((s * s + sigma0 * sigma0) / (s * s + sigmaT * sigmaT)).squareRoot()) * abar0.squareRoot()
        }
        let first = [11, 21, 41, 81], late = [81, 161, 321]
        let cases: [(SamplerKind, [Int], ClosedRange<Double>)] = [(.ddim, first, 1.6...2.6), (.euler, first, 1.6...2.6),
                                                                  (.heun, first, 3...5.5), (.dpmpp2m, late, 3...5.5),
                                                                  (.unipc, late, 3...5.5)]
        for (kind, ladder, band) in cases {
            var errors: [Double] = []
            for k in ladder {
                var o = SamplerOptions(); o.kind = kind; o.steps = k; o.spacing = .linspace
                var solver = try o.makeSolver(schedule: sched)
                XCTAssertEqual(solver.plan.timesteps[1], 1280 / (k - 1))
                var x = start
                try runLevels(&solver, x: &x, predictor: p, downTo: 1)
                errors.append(zip(x, exact).map { abs(Double($0) - $1) }.max()!)
            }
            let ratios = zip(errors, errors.dropFirst()).map { $0 / $1 }
            for r in ratios { XCTAssertTrue(band.contains(r), "\(kind): errors \(errors), ratios \(ratios)") }
        }
    }

    // MARK: identities

    func testEulerIsDDIMAndEulerAncestralIsDDIMEtaOne() throws {
        // Euler in sigma with eps-prediction: X' = x0^ + sigma' eps, i.e. DDIM eta = 0 (Song et al. sec. 4.3);
        // Euler ancestral: a'^2 sigma_up^2 = DDIM's sigma(eta = 1)^2 and the same z per sample and step.
        let p = try GaussianMixturePredictor.parse("mixture mu=-1,1 sigma=0.3", schedule: linear, sampleShape: [3])
        for spacing in [Spacing.trailing, .karras] {
            let pairs: [(SamplerOptions, SamplerOptions)] = [
                (options(.euler, steps: 15, spacing: spacing), options(.ddim, steps: 15, spacing: spacing)),
                (options(.eulerAncestral, steps: 15, spacing: spacing), options(.ddim, steps: 15, spacing: spacing, eta: 1)),
            ]
            for (a, b) in pairs {
                let xa = try sampleInProcess(p, schedule: linear, options: a, n: 20, d: 3, seed: 5)
                let xb = try sampleInProcess(p, schedule: linear, options: b, n: 20, d: 3, seed: 5)
                for j in 0..<xa.count { XCTAssertEqual(xa[j], xb[j], accuracy: 2e-5, "\(a.kind) vs \(b.kind) \(spacing) at \(j)") }
            }
        }
    }

    func testDPMSolverFirstStepIsDDIMAndMultistepDiffers() throws {
        // One step: first order = DDIM (Lu et al. 2022b, eq. 8 with D = x0^); with history the second-order
        // combination moves the result.
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.3)], schedule: linear, sampleShape: [2])
        for k in [1, 2] {
            let x = try sampleInProcess(p, schedule: linear, options: options(.dpmpp2m, steps: k, spacing: .trailing), n: 8, d: 2)
            let y = try sampleInProcess(p, schedule: linear, options: options(.ddim, steps: k, spacing: .trailing), n: 8, d: 2)
            for j in 0..<x.count { XCTAssertEqual(x[j], y[j], accuracy: 1e-5, "K = \(k): first order and the last step's x0^ only") }
        }
        let x = try sampleInProcess(p, schedule: linear, options: options(.dpmpp2m, steps: 5, spacing: .trailing), n: 8, d: 2)
        let y = try sampleInProcess(p, schedule: linear, options: options(.ddim, steps: 5, spacing: .trailing), n: 8, d: 2)
        XCTAssertGreaterThan(zip(x, y).map { abs($0 - $1) }.max()!, 1e-3)
    }

    func testSDESolverSamplesTheDataDistribution() throws {
        // DPM-Solver++ 2M SDE at 50 trailing steps against the data N(0.5, 0.3^2): n = 2000 x 4 values,
        // moments within 5 standard errors plus its discretisation bias (a float64 Monte Carlo replica with
        // 4e5 samples: std 0.3034, mean 0.5006), hence + 0.01. (Euler ancestral is DDIM eta = 1: tested above.)
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.3)], schedule: linear, sampleShape: [4])
        let x = try sampleInProcess(p, schedule: linear, options: options(.dpmpp2mSDE, steps: 50, spacing: .trailing), n: 2000, d: 4, seed: 3)
        let m = moments(x)
        XCTAssertEqual(m.mean, 0.5, accuracy: 5 * 0.3 / 8000.0.squareRoot() + 0.002)
        XCTAssertEqual(m.variance.squareRoot(), 0.3, accuracy: 5 * 0.3 / 16000.0.squareRoot() + 0.01)
        // And it is random: another seed, other samples.
        XCTAssertNotEqual(try sampleInProcess(p, schedule: linear, options: options(.dpmpp2mSDE, steps: 50, spacing: .trailing), n: 2, d: 4, seed: 4),
                          Array(x[0..<8]))
    }

    // MARK: diffusers

    struct Reference {
        let frame: Frame
        func f(_ name: String) throws -> [Float] { try frame.require(name).floats }
        func i(_ name: String) throws -> [Int] { try frame.require(name).integers().map { Int($0) } }
    }

    func reference() throws -> Reference {
        Reference(frame: try Frame.load(path: fixtures.appendingPathComponent("diffusers/schedulers.safetensors").path))
    }

    func testDiffusersTimestepsAndSigmas() throws {
        // Sigmas: diffusers computes them in float64 (the script puts our float64 alpha_bar in) and stores
        // float32, so they agree to float32 rounding, 6e-8 relative; 2e-7 allows for the pow in eq. 5.
        let ref = try reference()
        for name in ["dpmpp2m", "euler", "euler_ancestral", "dpmpp2m_karras", "unipc"] {
            var o = SamplerOptions(); o.steps = 10; o.spacing = name.hasSuffix("karras") ? .karras : .trailing
            let plan = try o.makeSolver(schedule: linear).plan
            XCTAssertEqual(Array(plan.timesteps.reversed()), try ref.i(name + ".timesteps"), name)
            let sig = try ref.f(name + ".sigmas")
            XCTAssertEqual(sig.count, 11); XCTAssertEqual(sig.last, 0)
            for i in 0..<10 { XCTAssertEqual(plan.sigma(level: 9 - i), Double(sig[i]), accuracy: 2e-7 * Double(sig[i]), "\(name) sigma \(i)") }
        }
        for k in [10, 25] {
            let ts = try ref.i("dpmpp_karras_\(k).timesteps"), sig = try ref.f("dpmpp_karras_\(k).sigmas")
            XCTAssertEqual(Array(try Spacing.karras.timesteps(count: 1000, steps: k, alphaBar: linear.alphaBar).reversed()), ts, "karras \(k)")
            let mine = Spacing.karrasSigmas(sigmaMin: linear.snr[0].squareRoot().reciprocal, sigmaMax: linear.snr[999].squareRoot().reciprocal, steps: k)
            for i in 0..<k { XCTAssertEqual(mine[i], Double(sig[i]), accuracy: 2e-7 * Double(sig[i]), "karras \(k) sigma \(i)") }
        }
        // diffusers' own float32 cumprod is ours to its float32 accuracy (1000 roundings: ~1e-5 relative at most).
        let native = try ref.f("native_alphas_cumprod")
        for t in [0, 10, 500, 999] { XCTAssertEqual(Double(native[t]), linear.alphaBar[t], accuracy: 1e-5 * linear.alphaBar[t]) }
    }

    func testDiffusersStepOutputs() throws {
        // Each step of our solver from diffusers' own input `sample` (its previous output) and model output,
        // compared in diffusers' coordinates (VP x for DPM-Solver, VE X = x sqrt(1 + sigma^2) for Euler/Heun).
        // Stochastic ones: diffusers' outputs with noise 0 and with noise 1 give the noise coefficient c per
        // element, and ours must equal prev0 + c z for our z (replayed from the same stream).
        // Tolerance: diffusers works in float32 (sample, model output, sigmas), about 10 roundings per step,
        // each up to 6e-8 of the largest term; terms reach |X| and sigma |eps| (VE values up to ~600),
        // so 1e-6 of the largest magnitude in the step.
        let ref = try reference()
        let n = 2, d = 3
        let cases: [(String, SamplerKind, Spacing, Bool)] = [
            ("dpmpp2m", .dpmpp2m, .trailing, false), ("dpmpp2m_karras", .dpmpp2m, .karras, false),
            ("dpmpp2m_sde", .dpmpp2mSDE, .trailing, false), ("euler", .euler, .trailing, true),
            ("euler_ancestral", .eulerAncestral, .trailing, true), ("heun", .heun, .trailing, true),
            ("unipc", .unipc, .trailing, false),
        ]
        for (name, kind, spacing, ve) in cases {
            var o = SamplerOptions(); o.kind = kind; o.steps = 10; o.spacing = spacing
            var solver = try o.makeSolver(schedule: linear)
            let plan = solver.plan
            let samples = try ref.f(name + ".sample"), outputs = try ref.f(name + ".model_output"), prevs = try ref.f(name + ".prev")
            let prevs0 = ref.frame[name + ".prev0"]?.floats
            let calls = samples.count / (n * d)
            func slice(_ a: [Float], _ c: Int) -> [Float] { Array(a[c * n * d ..< (c + 1) * n * d]) }
            // diffusers' coordinates <-> ours at level i.
            func toOurs(_ v: [Float], _ i: Int) -> [Float] { ve ? v.map { Float(Double($0) * plan.alphaSigma(level: i).a) } : v }
            func toTheirs(_ v: [Float], _ i: Int) -> [Double] { ve ? v.map { Double($0) / plan.alphaSigma(level: i).a } : v.map(Double.init) }
            var call = 0
            var noise = Sampling.streams(count: n, seed: 11, firstIndex: 0)
            var x0 = [Float](repeating: 0, count: n * d)
            for i in stride(from: 9, through: 0, by: -1) {
                var x = toOurs(slice(samples, call), i)
                let p = Prediction(eps: slice(outputs, call))
                var replay = noise
                var secondCall: Int? = nil
                let evaluate: (_ x: [Float], _ level: Int) throws -> Prediction = { xs, level in
                    XCTAssertEqual(level, i - 1)
                    let theirs = slice(samples, call + 1), mine = toTheirs(xs, level)
                    let scale = theirs.map { abs(Double($0)) }.max()!
                    for j in 0..<xs.count { XCTAssertEqual(mine[j], Double(theirs[j]), accuracy: 1e-6 * max(1, scale), "\(name) Heun stage at level \(i)") }
                    secondCall = call + 1
                    return Prediction(eps: slice(outputs, call + 1))
                }
                try solver.step(level: i, x: &x, prediction: p, sampleSize: d, x0: &x0, noise: &noise, evaluate: evaluate)
                let last = secondCall ?? call
                var expected = slice(prevs, last).map(Double.init)
                if let prevs0 {
                    let zero = slice(prevs0, last)
                    for j in 0..<expected.count {
                        let z = i > 0 ? Double(replay[j / d].nextNormal()) : 0
                        expected[j] = Double(zero[j]) + (expected[j] - Double(zero[j])) * z
                    }
                }
                let mine = toTheirs(x, i - 1)
                let scale = (expected + slice(samples, call).map(Double.init)).map(abs).max()!
                for j in 0..<mine.count {
                    XCTAssertEqual(mine[j], expected[j], accuracy: 1e-6 * max(1, scale), "\(name) level \(i) value \(j)")
                }
                call = last + 1
            }
            XCTAssertEqual(call, calls, name)
        }
    }

    // MARK: Karras spacing

    func testKarrasSpacing() throws {
        // Eq. 5 endpoints, ascending distinct timesteps, and DDPM/DDIM use the respaced chain on them.
        let sig = Spacing.karrasSigmas(sigmaMin: 0.01, sigmaMax: 100, steps: 5)
        XCTAssertEqual(sig.first!, 100, accuracy: 1e-12); XCTAssertEqual(sig.last!, 0.01, accuracy: 1e-15)
        XCTAssertEqual(pow(sig[2], 1 / 7), (pow(100, 1 / 7) + pow(0.01, 1 / 7)) / 2, accuracy: 1e-12)
        let all = try Spacing.karras.timesteps(count: 1000, steps: 1000, alphaBar: linear.alphaBar)
        XCTAssertLessThan(all.count, 1000); XCTAssertEqual(all.first, 0); XCTAssertEqual(all.last, 999)
        XCTAssertEqual(all, Array(Set(all)).sorted())
        XCTAssertEqual(try Spacing.karras.timesteps(count: 1000, steps: 1, alphaBar: linear.alphaBar), [999])
        XCTAssertThrowsError(try Spacing.karras.timesteps(count: 1000, steps: 10))   // no schedule
        // The interpolation in log sigma returns an exact timestep for its own sigma.
        let logs = (0..<1000).map { 0.5 * log(1 / linear.snr[$0]) }
        for t in [0, 1, 417, 998, 999] { XCTAssertEqual(Spacing.timestep(sigma: exp(logs[t]), logSigmas: logs), Double(t), accuracy: 1e-9) }
        // DDPM on karras timesteps: the respaced chain.
        var o = options(.ddpm, steps: 12, spacing: .karras)
        let plan = try o.makeSolver(schedule: linear).plan
        for (i, t) in plan.timesteps.enumerated() { XCTAssertEqual(plan.chain.alphaBar[i], linear.alphaBar[t], accuracy: 1e-14) }
        // SDEdit from t = 400: sigma_max is sigma_400.
        o.from = 400
        XCTAssertEqual(try o.makeSolver(schedule: linear).plan.startTimestep, 400)
        // Zero terminal SNR: sigma_max is the last finite one, abar = 0 never visited.
        let z = try Schedule.make(.linear, zeroTerminalSNR: true)
        let zt = try Spacing.karras.timesteps(count: 1000, steps: 10, alphaBar: z.alphaBar)
        XCTAssertEqual(zt.last, 998)
    }

    // MARK: dynamic thresholding

    func testDynamicThresholdScale() {
        // torch.quantile (linear): position p (n - 1) in the sorted |values|.
        let th = DynamicThreshold(percentile: 0.9, maxValue: 100)
        let v: [Double] = [0.5, -3, 2, -1, 4, 0, 1.5, -2.5, 3.5, 6]   // |v| sorted: 0 .5 1 1.5 2 2.5 3 3.5 4 6
        XCTAssertEqual(th.scale(v[...]), 4 + 0.1 * 2, accuracy: 1e-12)   // position 8.1
        XCTAssertEqual(DynamicThreshold(percentile: 0.9, maxValue: 3).scale(v[...]), 3)   // bounded by the max
        XCTAssertEqual(th.scale([0.1, -0.2, 0.3][...]), 1)                                // at least 1: plain clipping
        XCTAssertEqual(DynamicThreshold(percentile: 1, maxValue: 100).scale(v[...]), 6)
    }

    func testThresholdingThroughTheSamplers() throws {
        // x0^ is thresholded per sample and the last step returns it: every sample lies in [-1, 1]; with
        // max = 1 it is --clip; with a large max the result differs from clipping (the rescale keeps shape).
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: 0, sigma: 2)], schedule: linear, sampleShape: [16])
        for kind in SamplerKind.allCases {
            var o = options(kind, steps: 10, spacing: .trailing)
            o.threshold = DynamicThreshold(percentile: 0.995, maxValue: 10)
            let t = try sampleInProcess(p, schedule: linear, options: o, n: 20, d: 16)
            XCTAssertTrue(t.allSatisfy { abs($0) <= 1 }, "\(kind) thresholded")
            var c = options(kind, steps: 10, spacing: .trailing); c.clip = true
            let clipped = try sampleInProcess(p, schedule: linear, options: c, n: 20, d: 16)
            XCTAssertGreaterThan(zip(t, clipped).map { abs($0 - $1) }.max()!, 0.05, "\(kind): max 10 is not clipping")
            o.threshold = DynamicThreshold(percentile: 0.995, maxValue: 1)
            XCTAssertEqual(try sampleInProcess(p, schedule: linear, options: o, n: 20, d: 16), clipped, "\(kind): max 1 is clipping")
            c.threshold = DynamicThreshold()
            XCTAssertThrowsError(try c.makeSolver(schedule: linear))
        }
    }

    // MARK: x0-prediction at abar = 0

    /// Answers x0 = E[x_0 | x_t] of N(mu, s^2) as well as eps: x0 = mu + a s^2 (x - a mu) / (abar s^2 + 1 - abar).
    final class X0Gaussian: EpsPredictor {
        let base: GaussianMixturePredictor, mu: Double, s: Double, schedule: Schedule
        init(mu: Double, s: Double, schedule: Schedule) {
            self.mu = mu; self.s = s; self.schedule = schedule
            base = GaussianMixturePredictor(components: [GaussianComponent(mu: mu, sigma: s)], schedule: schedule, sampleShape: [2])
        }
        var sampleShape: [Int] { [2] }
        var learnsVariance: Bool { false }
        var describe: String { "x0 gaussian" }
        func predict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction {
            var p = try base.predict(x: x, t: t, y: y)
            let d = x.count / t.count
            p.x0 = x.indices.map { j in
                let ab = schedule.alphaBar[t[j / d]], a = ab.squareRoot()
                return Float(mu + a * s * s * (Double(x[j]) - a * mu) / (ab * s * s + 1 - ab))
            }
            return p
        }
    }

    func testX0PredictionStartsAtZeroSNR() throws {
        let z = try Schedule.make(.linear, zeroTerminalSNR: true)
        let p = X0Gaussian(mu: 0.5, s: 0.3, schedule: z)
        for kind in SamplerKind.allCases {
            var o = options(kind, steps: 20, spacing: .trailing)
            o.keepsZeroSNRStart = true
            let solver = try o.makeSolver(schedule: z)
            XCTAssertEqual(solver.plan.startTimestep, 999); XCTAssertNil(solver.plan.droppedTerminal)
            let x = try sampleInProcess(p, schedule: z, options: o, n: 500, d: 2, seed: 4)
            XCTAssertTrue(x.allSatisfy { $0.isFinite }, "\(kind)")
            // Starting at abar = 0 the first step gives x = a' x0^ + ... with x0^ = mu: the mean is right
            // (SE 0.3 / sqrt(1000) ~ 0.01; 0.05 allows the 20-step bias).
            XCTAssertEqual(moments(x).mean, 0.5, accuracy: 0.05, "\(kind)")
            // eps alone cannot start there: a one-line error naming the timestep.
            let eps = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.3)], schedule: z, sampleShape: [2])
            XCTAssertThrowsError(try sampleInProcess(eps, schedule: z, options: o, n: 2, d: 2)) { e in
                XCTAssertTrue("\(e)".contains("t = 999"), "\(e)")
            }
        }
    }

    // MARK: the denoise tool

    func denoise(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Data {
        let r = try runTool("denoise", args + ["--quiet"])
        XCTAssertEqual(r.status, 0, "denoise \(args): \(r.stderr)", file: file, line: line)
        return r.stdout
    }

    func testEverySamplerThroughDenoise() throws {
        // 10 steps, with a trajectory, and two shards equal to one run (the noise is per sample).
        for kind in newKinds {
            for spacing in ["trailing", "karras"] {
                let common = ["--analytic", "mixture mu=-1,1 sigma=0.3", "--shape", "2", "--sampler", kind.rawValue,
                              "--steps", "10", "--spacing", spacing, "--seed", "8"]
                let all = try denoise(common + ["-n", "6", "--every", "3"])
                let frames = try decode(all)
                let traj = frames.filter { $0.kind == "trajectory" }
                XCTAssertEqual(traj.map { $0.metadata["step"] }, ["0", "3", "6", "9"], "\(kind)")
                XCTAssertEqual(frames.last?.metadata["sampler"], kind.rawValue)
                let x = try xs(all)
                XCTAssertEqual(x.count, 12); XCTAssertTrue(x.allSatisfy { $0.isFinite })
                let a = try xs(try denoise(common + ["-n", "2"]))
                let b = try xs(try denoise(common + ["-n", "4", "--offset", "2", "--batch", "3"]))
                XCTAssertEqual(a + b, x, "\(kind) \(spacing): shards")
                // The trajectory's x0_pred at the last step is the output (every solver's last step returns x0^).
                XCTAssertEqual(try traj.last!.require("x0_pred").floats, x, "\(kind)")
            }
        }
        // SDEdit and the corrector with a new sampler.
        let r = try runTool("noise", ["-t", "300", "--seed", "2"], stdin: try encode([{
            var f = Frame(metadata: ["kind": "batch"]); f["x"] = Tensor([Float](repeating: 0.4, count: 8), shape: [4, 2]); return f }()]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let edited = try runTool("denoise", ["--from", "300", "--analytic", "gaussian mu=0.5 sigma=0.3", "--sampler", "dpmpp-2m",
                                             "--steps", "8", "--spacing", "trailing", "--corrector-steps", "1", "--quiet"], stdin: r.stdout)
        XCTAssertEqual(edited.status, 0, edited.stderr)
        XCTAssertEqual(try xs(edited.stdout).count, 8)
    }

    func testBadSamplerFlagsGiveOneLineErrors() throws {
        let base = ["--analytic", "gaussian mu=0 sigma=1", "--shape", "2", "-n", "2"]
        let cases: [([String], String)] = [
            (["--sampler", "heun", "--eta", "0.5"], "--eta applies to --sampler ddim"),
            (["--sampler", "euler", "--variance", "beta"], "--variance applies to --sampler ddpm"),
            (["--clip", "--dynamic-threshold"], "exclude each other"),
            (["--threshold-percentile", "0.9"], "apply to --dynamic-threshold"),
            (["--dynamic-threshold", "--threshold-percentile", "1.5"], "--threshold-percentile must lie in (0, 1]"),
            (["--dynamic-threshold", "--threshold-max", "0.5"], "--threshold-max must be finite and >= 1"),
            (["--snr", "0.2"], "--snr applies to --corrector-steps"),
            (["--sampler", "dpmpp-3m"], "dpmpp-3m"),
            (["--spacing", "karras", "--steps", "2000"], "exceed"),
            (["--spacing", "trailing", "--steps-offset", "1"], "--steps-offset applies to --spacing leading"),
            (["--steps-offset=-1"], "--steps-offset must be >= 0"),
            (["--steps", "50", "--steps-offset", "30"], "past t = 999"),
            (["--clip-model-eps", "--sampler", "ddim"], "--clip-model-eps applies with --clip"),
            (["--clip-model-eps", "--clip"], "--clip-model-eps applies to --sampler ddim"),
        ]
        for (args, expect) in cases {
            let r = try runTool("denoise", base + args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(args): one line expected: \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("denoise: ") && r.stderr.contains(expect), "\(args): '\(expect)' not in \(r.stderr)")
        }
    }
}

private extension Double { var reciprocal: Double { 1 / self } }
