// The reverse process against closed forms: spacing, respacing, posterior,
// DDIM, and sampling with exact predictors whose steps are affine in x.
import Foundation
import XCTest
@testable import Shared

final class SamplerTests: XCTestCase {
    let linear = Schedule.standard()

    // MARK: spacing and respacing

    func testSpacingDefinitions() throws {
        // Lin et al. 2024, Table 2 (T = 1000, 50 steps), 0-based.
        XCTAssertEqual(try Spacing.leading.timesteps(count: 1000, steps: 50), Array(stride(from: 0, through: 980, by: 20)))
        XCTAssertEqual(try Spacing.trailing.timesteps(count: 1000, steps: 50), Array(stride(from: 19, through: 999, by: 20)))
        let lin = try Spacing.linspace.timesteps(count: 1000, steps: 50)
        XCTAssertEqual(lin.first, 0); XCTAssertEqual(lin.last, 999); XCTAssertEqual(lin[1], 20); XCTAssertEqual(lin[48], 979)
        // Small case by hand: N = 10, K = 3.
        XCTAssertEqual(try Spacing.leading.timesteps(count: 10, steps: 3), [0, 3, 6])
        XCTAssertEqual(try Spacing.trailing.timesteps(count: 10, steps: 3), [2, 6, 9])   // round(10 - 10j/3) - 1
        XCTAssertEqual(try Spacing.linspace.timesteps(count: 10, steps: 3), [0, 4, 9])   // 4.5 rounds half to even
        // diffusers' steps_offset: leading only, and never past N - 1.
        XCTAssertEqual(try Spacing.leading.timesteps(count: 1000, steps: 50, offset: 1), Array(stride(from: 1, through: 981, by: 20)))
        XCTAssertEqual(try Spacing.leading.timesteps(count: 10, steps: 3, offset: 3), [3, 6, 9])
        XCTAssertThrowsError(try Spacing.leading.timesteps(count: 10, steps: 3, offset: 4))
        XCTAssertThrowsError(try Spacing.trailing.timesteps(count: 10, steps: 3, offset: 1))
        var d = SamplerDefaults(T: 1000); d.stepsOffset = 1
        XCTAssertFalse(d.offsetFits(from: nil, steps: nil))   // 1000 steps: t = 1 ... 1000
        XCTAssertTrue(d.offsetFits(from: nil, steps: 50))
        XCTAssertFalse(d.offsetFits(from: 49, steps: 50))     // SDEdit from t = 49: t = 1 ... 50

        for s in Spacing.allCases where s != .karras {   // karras: SolverTests
            XCTAssertEqual(try s.timesteps(count: 7, steps: 7), Array(0..<7), "\(s) with K = N")
            XCTAssertThrowsError(try s.timesteps(count: 10, steps: 0))
            XCTAssertThrowsError(try s.timesteps(count: 10, steps: 11))
        }
    }

    func testRespacedScheduleKeepsAlphaBar() throws {
        let ts = try Spacing.trailing.timesteps(count: 1000, steps: 37)
        let r = try linear.respaced(ts)
        for (i, t) in ts.enumerated() {
            XCTAssertEqual(r.alphaBar[i], linear.alphaBar[t], accuracy: 1e-13 * 1)
            let prev = i > 0 ? linear.alphaBar[ts[i - 1]] : 1
            XCTAssertEqual(r.beta[i], 1 - linear.alphaBar[t] / prev, accuracy: 1e-15)
        }
        let full = try linear.respaced(Array(0..<1000))
        for t in [0, 1, 500, 999] { XCTAssertEqual(full.beta[t], linear.beta[t], accuracy: 1e-12) }
    }

    // MARK: posterior and DDIM against closed forms

    func testPosteriorMeanAndVarianceByBayes() throws {
        // q(x_{t-1} | x_t, x_0) from Gaussian conditioning: x_{t-1} ~ N(sqrt(abar_prev) x0, 1 - abar_prev),
        // x_t | x_{t-1} ~ N(sqrt(alpha_t) x_{t-1}, beta_t): precision = 1/(1 - abar_prev) + alpha_t / beta_t.
        let chains = [linear, try linear.respaced(try Spacing.linspace.timesteps(count: 1000, steps: 20)),
                      try Schedule.make(.cosine, T: 300)]
        for s in chains {
            for t in [1, 2, s.T / 2, s.T - 1] {
                let ap = s.alphaBar[t - 1], al = s.alpha[t], b = s.beta[t]
                let precision = 1 / (1 - ap) + al / b
                for (x0, xt) in [(0.3, -1.2), (-0.9, 0.4), (1.0, 2.5)] {
                    let mean = (ap.squareRoot() * x0 / (1 - ap) + al.squareRoot() * xt / b) / precision
                    XCTAssertEqual(Posterior.mean(x0: x0, xt: xt, t: t, schedule: s), mean, accuracy: 1e-12 * max(1, abs(mean)))
                }
                XCTAssertEqual(s.posteriorVariance[t], 1 / precision, accuracy: 1e-12 * s.posteriorVariance[t] + 1e-300)
            }
        }
    }

    func testX0EpsRoundTripAndScore() {
        for t in [0, 10, 500, 999] {
            let a = linear.alphaBar[t]
            let x0 = 0.37, eps = -1.3
            let xt = a.squareRoot() * x0 + (1 - a).squareRoot() * eps
            XCTAssertEqual(Posterior.predictX0(xt: xt, eps: eps, alphaBar: a), x0, accuracy: 1e-9 / a.squareRoot())
            XCTAssertEqual(Posterior.predictEps(xt: xt, x0: x0, alphaBar: a), eps, accuracy: 1e-9 / (1 - a).squareRoot())
            // Score of q(x_t | x_0) = N(sqrt(a) x0, 1 - a): -(x_t - sqrt(a) x0) / (1 - a) = -eps / sqrt(1 - a).
            XCTAssertEqual(Posterior.score(eps: eps, alphaBar: a), -(xt - a.squareRoot() * x0) / (1 - a), accuracy: 1e-9)
        }
    }

    func testDDIMUpdateClosedForms() throws {
        let ts = try Spacing.leading.timesteps(count: 1000, steps: 50)
        let chain = try linear.respaced(ts)
        for i in [1, 2, 25, 49] {
            let a = chain.alphaBar[i], ap = chain.alphaBar[i - 1]
            // eta = 1: sigma^2 is the posterior variance beta~ of the respaced chain (Song et al. sec. 4.1).
            let s1 = DDIM.sigma(eta: 1, alphaBar: a, alphaBarPrev: ap)
            XCTAssertEqual(s1 * s1, chain.posteriorVariance[i], accuracy: 1e-12 * chain.posteriorVariance[i])
            XCTAssertEqual(DDIM.sigma(eta: 0.5, alphaBar: a, alphaBarPrev: ap), 0.5 * s1, accuracy: 1e-15)
            XCTAssertEqual(DDIM.sigma(eta: 0, alphaBar: a, alphaBarPrev: ap), 0)
            for (x0, xt) in [(0.3, -1.2), (-0.9, 0.4)] {
                let eps = (xt - a.squareRoot() * x0) / (1 - a).squareRoot()
                // eta = 1, z = 0: the DDPM posterior mean.
                XCTAssertEqual(DDIM.step(x0: x0, eps: eps, alphaBarPrev: ap, sigma: s1, z: 0),
                               Posterior.mean(x0: x0, xt: xt, t: i, schedule: chain), accuracy: 1e-12)
                // eta = 0: x_prev = sqrt(ap) x0 + sqrt(1 - ap) eps, the same (x0, eps) pair one level down (eq. 12).
                XCTAssertEqual(DDIM.step(x0: x0, eps: eps, alphaBarPrev: ap, sigma: 0, z: 0),
                               ap.squareRoot() * x0 + (1 - ap).squareRoot() * eps, accuracy: 1e-15)
            }
        }
        // Last step: abar_prev = 1, sigma = 0, the result is x0.
        XCTAssertEqual(DDIM.sigma(eta: 1, alphaBar: chain.alphaBar[0], alphaBarPrev: 1), 0)
        XCTAssertEqual(DDIM.step(x0: 0.42, eps: 1.7, alphaBarPrev: 1, sigma: 0, z: 0.9), 0.42)
    }

    // MARK: sampling with the exact Gaussian predictor

    func testClosedFormPropagationSanityNumbers() throws {
        // The figures: mu = 0.5, sigma = 0.3, linear schedule, leading spacing.
        let eps = gaussianEps(mu: 0.5, sigma: 0.3)
        let ddim = propagate(ts: try Spacing.leading.timesteps(count: 1000, steps: 50), alphaBar: linear.alphaBar, kind: .ddim, eps: eps)
        XCTAssertEqual(ddim.variance.squareRoot(), 0.2750, accuracy: 0.00005)
        let ddpm = propagate(ts: Array(0..<1000), alphaBar: linear.alphaBar, kind: .ddpm, variance: .posterior, eps: eps)
        XCTAssertEqual(ddpm.variance.squareRoot(), 0.2963, accuracy: 0.00005)
        XCTAssertEqual(ddpm.mean, 0.5, accuracy: 1e-4)
    }

    func testSamplingMatchesPropagation() throws {
        // n = 2000 samples x 4 iid coordinates = 8000 Gaussian values per case; 5 standard errors.
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.3)], schedule: linear, sampleShape: [4])
        let eps = gaussianEps(mu: 0.5, sigma: 0.3)
        let n = 2000, d = 4
        let cases: [(String, SamplerOptions)] = [
            ("DDPM-1000 posterior", options(.ddpm)),
            ("DDPM-1000 beta", options(.ddpm, variance: .beta)),
            ("DDPM-100 leading posterior", options(.ddpm, steps: 100)),
            ("DDPM-100 trailing beta", options(.ddpm, steps: 100, spacing: .trailing, variance: .beta)),
            ("DDIM-50 eta 0", options(.ddim, steps: 50)),
            ("DDIM-50 eta 1", options(.ddim, steps: 50, eta: 1)),
            ("DDIM-50 linspace eta 0.5", options(.ddim, steps: 50, spacing: .linspace, eta: 0.5)),
        ]
        for (label, o) in cases {
            let ts = try o.spacing.timesteps(count: 1000, steps: o.steps ?? 1000)
            let exact = propagate(ts: ts, alphaBar: linear.alphaBar, kind: o.kind, variance: o.variance, eta: o.eta, eps: eps)
            let x = try sampleInProcess(p, schedule: linear, options: o, n: n, d: d, seed: 7)
            assertMoments(x, exact, label)
        }
        // Sanity of the test's power: DDIM-50 (0.2750) and DDPM-1000 (0.2963) differ by ~10 standard errors of the std.
    }

    func testEverySampleIsItsExactNoisePath() throws {
        // With the Gaussian eps*, x_0 is a known function of sample j's random stream: x_T = the first d
        // normals, then x <- a_i x + b_i + sigma_i z_i with z_i the next d normals (none at the last step).
        // Replaying the stream through the propagated coefficients must give each sample to float accuracy.
        let d = 3, n = 6, seed: UInt64 = 21
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.3)], schedule: linear, sampleShape: [d], v: -0.3)
        let cases: [SamplerOptions] = [options(.ddpm), options(.ddpm, steps: 100, variance: .beta),
                                       options(.ddpm, steps: 60, spacing: .linspace, variance: .learned),
                                       options(.ddim, steps: 40, spacing: .trailing, eta: 0.7)]
        for o in cases {
            let ts = try o.spacing.timesteps(count: 1000, steps: o.steps ?? 1000)
            let exact = propagate(ts: ts, alphaBar: linear.alphaBar, kind: o.kind, variance: o.variance, eta: o.eta,
                                  learnedV: -0.3, eps: gaussianEps(mu: 0.5, sigma: 0.3))
            let x = try sampleInProcess(p, schedule: linear, options: o, n: n, d: d, seed: seed)
            for s in 0..<n {
                var r = RandomStream(seed: seed, purpose: .sampler, index: UInt64(s))
                var v = (0..<d).map { _ in Double(r.nextNormal()) }
                for (k, st) in exact.steps.enumerated() {
                    let last = k == exact.steps.count - 1
                    for j in 0..<d { v[j] = st.a * v[j] + st.b + (last ? 0 : st.sigma * Double(r.nextNormal())) }
                }
                for j in 0..<d { XCTAssertEqual(Double(x[s * d + j]), v[j], accuracy: 1e-4, "\(o.kind) \(o.variance) sample \(s)") }
            }
        }
    }

    func testLearnedVarianceMatchesPropagation() throws {
        // A constant v = 0.4: log Sigma = 0.7 log beta' + 0.3 log beta~' (Nichol & Dhariwal eq. 15).
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: -0.2, sigma: 0.5)], schedule: linear, sampleShape: [4], v: 0.4)
        let o = options(.ddpm, steps: 100, spacing: .trailing, variance: .learned)
        let exact = propagate(ts: try Spacing.trailing.timesteps(count: 1000, steps: 100), alphaBar: linear.alphaBar,
                              kind: .ddpm, variance: .learned, learnedV: 0.4, eps: gaussianEps(mu: -0.2, sigma: 0.5))
        assertMoments(try sampleInProcess(p, schedule: linear, options: o, n: 2000, d: 4), exact, "learned v = 0.4")
        // Without v the sampler refuses.
        let plain = GaussianMixturePredictor(components: [GaussianComponent(mu: 0, sigma: 1)], schedule: linear, sampleShape: [1])
        XCTAssertThrowsError(try sampleInProcess(plain, schedule: linear, options: o, n: 2, d: 1))
    }

    func testFromIsExactAffineMap() throws {
        // DDIM eta 0 from x_t at t = 500 is deterministic and affine: compare each sample with A x + B.
        var o = options(.ddim, steps: 25, spacing: .trailing)
        o.from = 500
        var s = try o.makeSolver(schedule: linear)
        XCTAssertEqual(s.plan.startTimestep, 500)
        let ts = try Spacing.trailing.timesteps(count: 501, steps: 25)
        let exact = propagate(ts: ts, alphaBar: linear.alphaBar, kind: .ddim, eps: gaussianEps(mu: 0.5, sigma: 0.3))
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.3)], schedule: linear, sampleShape: [3])
        var x: [Float] = [-2, -0.5, 0, 0.3, 1, 2.5]
        let x0 = x
        var noise = Sampling.streams(count: 2, seed: 0, firstIndex: 0), corr: [RandomStream] = []
        var none: Trajectory? = nil
        try Sampling.run(x: &x, y: nil, predictor: p, solver: &s, noise: &noise, correctorNoise: &corr, trajectory: &none)
        for i in 0..<x.count { XCTAssertEqual(Double(x[i]), exact.A * Double(x0[i]) + exact.B, accuracy: 2e-5) }
        var bad = o; bad.from = 1000
        XCTAssertThrowsError(try bad.makeSolver(schedule: linear))
        bad.from = -1
        XCTAssertThrowsError(try bad.makeSolver(schedule: linear))
    }

    func testMixtureWeightsAfterSampling() throws {
        // 0.3 N(-1, 0.25^2) + 0.7 N(1, 0.25^2) in D = 2; n = 3000: SE of the fraction = sqrt(0.21 / 3000) = 0.0084.
        let p = try GaussianMixturePredictor.parse("mixture mu=-1,1 sigma=0.25 weight=0.3,0.7", schedule: linear, sampleShape: [2])
        let n = 3000
        let x = try sampleInProcess(p, schedule: linear, options: options(.ddpm, steps: 250, spacing: .trailing), n: n, d: 2, seed: 3)
        var right = 0
        for s in 0..<n where x[2 * s] + x[2 * s + 1] > 0 { right += 1 }
        let frac = Double(right) / Double(n)
        XCTAssertEqual(frac, 0.7, accuracy: 4 * (0.21 / Double(n)).squareRoot(), "fraction in the mu = 1 component")
        // The components keep their own spread: within-cluster std near 0.25 (loose: 10 %).
        var dev = 0.0, cnt = 0.0
        for s in 0..<n { let c: Float = x[2 * s] + x[2 * s + 1] > 0 ? 1 : -1; for k in 0..<2 { dev += Double((x[2 * s + k] - c) * (x[2 * s + k] - c)); cnt += 1 } }
        XCTAssertEqual((dev / cnt).squareRoot(), 0.25, accuracy: 0.025)
    }

    func testCorrectorPullsTowardsTheTrueMarginal() throws {
        // DDPM-20 with beta~ undershoots the data std 0.3 (discretisation); Langevin steps with the exact
        // score push each level towards q_t, so the final std must move towards 0.3.
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.3)], schedule: linear, sampleShape: [8])
        var o = options(.ddpm, steps: 20)
        let plain = moments(try sampleInProcess(p, schedule: linear, options: o, n: 1000, d: 8)).variance.squareRoot()
        o.correctorSteps = 2; o.snr = 0.1
        let corrected = moments(try sampleInProcess(p, schedule: linear, options: o, n: 1000, d: 8)).variance.squareRoot()
        XCTAssertLessThan(abs(corrected - 0.3), abs(plain - 0.3) - 0.005, "plain \(plain), corrected \(corrected)")
    }

    func testClipKeepsPredictedX0InRange() throws {
        // Data N(0, 2^2) mostly lies outside [-1, 1]. With --clip the last step returns the clipped x0^,
        // so every sample is in [-1, 1] (DDPM: coef1'_0 = 1, coef2'_0 = 0; DDIM: eps recomputed from it).
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: 0, sigma: 2)], schedule: linear, sampleShape: [2])
        for kind in SamplerKind.allCases {
            var o = options(kind, steps: 20)
            let free = try sampleInProcess(p, schedule: linear, options: o, n: 200, d: 2)
            XCTAssertGreaterThan(free.filter { abs($0) > 1 }.count, 100, "\(kind) without clip")
            o.clip = true
            let clipped = try sampleInProcess(p, schedule: linear, options: o, n: 200, d: 2)
            XCTAssertTrue(clipped.allSatisfy { abs($0) <= 1 }, "\(kind) with clip")
        }
    }

    func testZeroTerminalSNRStartsAtFirstFiniteStep() throws {
        let z = try Schedule.make(.linear, zeroTerminalSNR: true)
        XCTAssertEqual(z.alphaBar[999], 0)
        let s = try options(.ddim, steps: 10, spacing: .trailing).makeSolver(schedule: z)
        XCTAssertEqual(s.plan.droppedTerminal, 999)
        XCTAssertEqual(s.plan.startTimestep, 899)
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: 0.5, sigma: 0.3)], schedule: z, sampleShape: [2])
        let x = try sampleInProcess(p, schedule: z, options: options(.ddim, steps: 10, spacing: .trailing), n: 50, d: 2)
        XCTAssertTrue(x.allSatisfy { $0.isFinite })
        var one = SamplerOptions(); one.steps = 1; one.spacing = .trailing
        XCTAssertThrowsError(try one.makeSolver(schedule: z))   // only the abar = 0 step: refused
    }
}
