// Guidance formulas and guided sampling against closed forms.
import Foundation
import XCTest
@testable import Shared

final class GuidanceTests: XCTestCase {
    let linear = Schedule.standard()

    func testClassifierFreeMixAndConventions() {
        let c: [Float] = [1, 2, -1, 0.5], u: [Float] = [0, 1, 1, 0.5]
        XCTAssertEqual(Guidance.classifierFree(cond: c, uncond: u, scale: 1), c)          // W = 1: conditional
        XCTAssertEqual(Guidance.classifierFree(cond: c, uncond: u, scale: 0), u)          // W = 0: unconditional
        // W = 3 is Ho & Salimans' w = 2: (1 + w) c - w u.
        let g = Guidance.classifierFree(cond: c, uncond: u, scale: 3)
        for i in 0..<4 { XCTAssertEqual(g[i], 3 * c[i] - 2 * u[i], accuracy: 1e-6) }
    }

    func testRescaleMatchesConditionalStdPerSample() {
        // Two samples of 4 values; with phi = 1 each sample's std equals that of its eps_cond (Lin et al. eq. 15).
        let c: [Float] = [1, -1, 0.5, 0, 3, 2, 1, 0], u: [Float] = [0, 0, 0, 0, 1, 1, 1, 1]
        let g = Guidance.classifierFree(cond: c, uncond: u, scale: 4)
        let r = Guidance.rescale(guided: g, cond: c, phi: 1, sampleSize: 4)
        for s in 0..<2 {
            XCTAssertEqual(Guidance.standardDeviation(r[s * 4 ..< s * 4 + 4]), Guidance.standardDeviation(c[s * 4 ..< s * 4 + 4]), accuracy: 1e-6)
        }
        // phi = 0.5: halfway between the rescaled and the plain guided values (eq. 16).
        let h = Guidance.rescale(guided: g, cond: c, phi: 0.5, sampleSize: 4)
        for i in 0..<8 { XCTAssertEqual(h[i], 0.5 * r[i] + 0.5 * g[i], accuracy: 1e-5) }
        XCTAssertEqual(Guidance.rescale(guided: g, cond: c, phi: 0, sampleSize: 4), g)
    }

    /// Conditional N(mu_y, 0.3^2) with y = 1: mu = 1; unconditional (null) N(0, 1).
    func cfgPredictor() throws -> GaussianMixturePredictor {
        try GaussianMixturePredictor.parse("mixture mu=-1,1 sigma=0.3 null=0,1", schedule: linear, sampleShape: [4])
    }

    func testClassifierFreeGuidedSamplingMatchesPropagation() throws {
        // Guided eps = (1 - W) eps_u + W eps_c is affine in x when both are Gaussian eps*: propagate exactly.
        let W = 3.0
        let ec = gaussianEps(mu: 1, sigma: 0.3), eu = gaussianEps(mu: 0, sigma: 1)
        let guided: AffineEps = { a in
            let (ca, cb) = ec(a), (ua, ub) = eu(a)
            return (ua + W * (ca - ua), ub + W * (cb - ub))
        }
        let p = ClassifierFreeGuided(try cfgPredictor(), scale: W)
        let n = 2000
        for (label, o) in [("DDIM-50", options(.ddim, steps: 50)), ("DDPM-100", options(.ddpm, steps: 100, spacing: .trailing))] {
            let ts = try o.spacing.timesteps(count: 1000, steps: o.steps!)
            let exact = propagate(ts: ts, alphaBar: linear.alphaBar, kind: o.kind, variance: o.variance, eps: guided)
            let plain = propagate(ts: ts, alphaBar: linear.alphaBar, kind: o.kind, variance: o.variance, eps: ec)
            // Guidance moves the mean beyond the class mean, by far more than the test's resolution.
            XCTAssertGreaterThan(exact.mean - plain.mean, 0.05)
            let x = try sampleInProcess(p, schedule: linear, options: o, n: n, d: 4, seed: 11, y: Array(repeating: 1, count: n))
            assertMoments(x, exact, "CFG W = 3 " + label)
        }
    }

    func testClassifierGuidanceIdentityAndSampling() throws {
        // Classifier: log q_t(x | y) - log q_t(x | reference) with Gaussian noised marginals; base model N(0, 0.3^2).
        let base = GaussianMixturePredictor(components: [GaussianComponent(mu: 0, sigma: 0.3)], schedule: linear, sampleShape: [4])
        let cls = GaussianRatioClassifier(classes: [GaussianComponent(mu: -1, sigma: 0.3), GaussianComponent(mu: 1, sigma: 0.3)],
                                          reference: GaussianComponent(mu: 0, sigma: 0.3), schedule: linear)
        // S = 1: eps - sqrt(1 - abar) grad log p(y | x) is exactly eps* of class y's Gaussian (Bayes' rule for scores).
        let g1 = ClassifierGuided(base, schedule: linear, scale: 1, gradient: { try cls.gradient(x: $0, t: $1, y: $2) })
        let target = GaussianMixturePredictor(components: [GaussianComponent(mu: 1, sigma: 0.3)], schedule: linear, sampleShape: [4])
        let x: [Float] = [-1.5, 0, 0.7, 2, 0.1, -0.3, 1.1, 0.9]
        for t in [0, 100, 500, 999] {
            let a = try g1.predict(x: x, t: [t, t], y: [1, 1]).eps, b = try target.predict(x: x, t: [t, t], y: nil).eps
            for i in 0..<x.count { XCTAssertEqual(a[i], b[i], accuracy: 1e-5, "t = \(t)") }
        }
        // S = 2.5: eps~ stays affine; sample and compare with the propagation.
        let S = 2.5
        let g = ClassifierGuided(base, schedule: linear, scale: S, gradient: { try cls.gradient(x: $0, t: $1, y: $2) })
        let eb = gaussianEps(mu: 0, sigma: 0.3)
        let guided: AffineEps = { a in
            let (ea, e0) = eb(a)
            let v = a * 0.09 + 1 - a, sa = a.squareRoot()
            let ga = -1 / v + 1 / v, gb = sa * 1 / v - sa * 0 / v   // grad = ga x + gb
            return (ea - (1 - a).squareRoot() * S * ga, e0 - (1 - a).squareRoot() * S * gb)
        }
        let o = options(.ddim, steps: 50, eta: 1)
        let exact = propagate(ts: try Spacing.leading.timesteps(count: 1000, steps: 50), alphaBar: linear.alphaBar, kind: .ddim, eta: 1, eps: guided)
        XCTAssertGreaterThan(exact.mean, 1.5)   // S = 2.5 pushes past the class mean 1
        let n = 2000
        assertMoments(try sampleInProcess(g, schedule: linear, options: o, n: n, d: 4, seed: 5, y: Array(repeating: 1, count: n)), exact, "classifier S = 2.5")
    }

    func testGuidanceNeedsLabels() throws {
        let p = ClassifierFreeGuided(try cfgPredictor(), scale: 2)
        XCTAssertThrowsError(try p.predict(x: [0, 0, 0, 0], t: [10], y: nil))
    }
}
