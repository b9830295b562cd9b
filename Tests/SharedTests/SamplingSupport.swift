// Helpers for the sampler tests: exact propagation of (mean, variance) through
// a reverse chain whose eps is affine in x, and sample statistics.
import Foundation
import XCTest
@testable import Shared

/// eps(x) = a x + b at a given abar.
typealias AffineEps = (_ abar: Double) -> (a: Double, b: Double)

/// eps* of N(mu, s^2) per coordinate: sqrt(1-abar)(x - sqrt(abar) mu) / (abar s^2 + 1 - abar).
func gaussianEps(mu: Double, sigma s: Double) -> AffineEps {
    { abar in
        let k = (1 - abar).squareRoot() / (abar * s * s + 1 - abar)
        return (k, -k * abar.squareRoot() * mu)
    }
}

struct Propagated {
    var mean: Double, variance: Double
    /// The whole chain's deterministic part: x_0 = A x_start + B + noise.
    var A: Double, B: Double
    /// Per step, in the order run (i = K-1 .. 0): x <- a x + b + sigma z.
    var steps: [(a: Double, b: Double, sigma: Double)] = []
}

/// Propagates x ~ N(m0, v0) through the chain on ascending timesteps `ts`, written
/// from the papers' formulas directly (not from the code under test's helpers):
/// abar_prev = abar_{t_{i-1}} (1 below t_0), beta' = 1 - abar / abar_prev,
/// DDPM mean = sqrt(abar_prev) beta'/(1-abar) x0^ + sqrt(1-beta') (1-abar_prev)/(1-abar) x_t,
/// DDIM x_prev = sqrt(abar_prev) x0^ + sqrt(1 - abar_prev - sigma^2) eps + sigma z.
func propagate(ts: [Int], alphaBar: [Double], kind: SamplerKind, variance: VarianceKind = .posterior,
               eta: Double = 0, learnedV: Double = 0, m0: Double = 0, v0: Double = 1, eps: AffineEps) -> Propagated {
    var m = m0, v = v0, A = 1.0, B = 0.0
    var steps: [(a: Double, b: Double, sigma: Double)] = []
    for i in stride(from: ts.count - 1, through: 0, by: -1) {
        let a = alphaBar[ts[i]], ap = i > 0 ? alphaBar[ts[i - 1]] : 1.0
        let (ea, eb) = eps(a)
        // x0^ = (x - sqrt(1-a) eps) / sqrt(a)
        let x0a = (1 - (1 - a).squareRoot() * ea) / a.squareRoot()
        let x0b = -(1 - a).squareRoot() * eb / a.squareRoot()
        var sA: Double, sB: Double, sig2: Double
        switch kind {
        case .ddpm:
            let bp = 1 - a / ap
            let c1 = ap.squareRoot() * bp / (1 - a), c2 = (1 - bp).squareRoot() * (1 - ap) / (1 - a)
            sA = c1 * x0a + c2; sB = c1 * x0b
            let postVar = bp * (1 - ap) / (1 - a)
            switch variance {
            case .beta: sig2 = bp
            case .posterior: sig2 = postVar
            case .learned:
                let frac = (learnedV + 1) / 2
                sig2 = i > 0 ? exp(frac * log(bp) + (1 - frac) * log(postVar)) : 0
            }
            if i == 0 { sig2 = 0 }
        case .ddim:
            sig2 = eta * eta * (1 - ap) / (1 - a) * (1 - a / ap)
            let ce = (1 - ap - sig2).squareRoot()
            sA = ap.squareRoot() * x0a + ce * ea; sB = ap.squareRoot() * x0b + ce * eb
        default:
            preconditionFailure("propagate covers ddpm and ddim (SolverTests checks the other solvers)")
        }
        m = sA * m + sB; v = sA * sA * v + sig2
        A = sA * A; B = sA * B + sB
        steps.append((sA, sB, sig2.squareRoot()))
    }
    return Propagated(mean: m, variance: v, A: A, B: B, steps: steps)
}

/// Mean and (unbiased) variance of all values.
func moments(_ x: [Float]) -> (mean: Double, variance: Double) {
    let n = Double(x.count)
    let m = x.reduce(0.0) { $0 + Double($1) } / n
    let v = x.reduce(0.0) { $0 + (Double($1) - m) * (Double($1) - m) } / (n - 1)
    return (m, v)
}

/// Asserts sample moments of iid Gaussian values match (mean, variance) within k standard errors:
/// SE(mean) = sqrt(var / n), SE(var) = var sqrt(2 / (n - 1)).
func assertMoments(_ x: [Float], _ p: Propagated, k: Double = 5, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    let (m, v) = moments(x)
    let n = Double(x.count)
    let seM = (p.variance / n).squareRoot(), seV = p.variance * (2 / (n - 1)).squareRoot()
    XCTAssertEqual(m, p.mean, accuracy: k * seM, "\(label): mean \(m) vs exact \(p.mean) (n = \(x.count))", file: file, line: line)
    XCTAssertEqual(v, p.variance, accuracy: k * seV, "\(label): variance \(v) vs exact \(p.variance) (n = \(x.count))", file: file, line: line)
}

/// Runs a sampler in process from x_T ~ N(0, I): n samples of d values.
func sampleInProcess(_ p: EpsPredictor, schedule: Schedule, options: SamplerOptions, n: Int, d: Int,
                     seed: UInt64 = 1, y: [Int]? = nil) throws -> [Float] {
    try Sampling.sample(count: n, sampleShape: [d], y: y, predictor: p, options: options, schedule: schedule, seed: seed)
}

func options(_ kind: SamplerKind, steps: Int? = nil, spacing: Spacing = .leading, variance: VarianceKind = .posterior,
             eta: Double = 0) -> SamplerOptions {
    var o = SamplerOptions()
    o.kind = kind; o.steps = steps; o.spacing = spacing; o.variance = variance; o.eta = eta
    return o
}

/// Path of a built tool, for predictor commands.
func toolPath(_ name: String) -> String { productsDirectory.appendingPathComponent(name).path }

/// The `x` tensors of all frames of a given kind, concatenated.
func xs(_ data: Data, kind: String = "batch", tensor: String = "x") throws -> [Float] {
    try decode(data).filter { $0.kind == kind }.flatMap { try $0.require(tensor).floats }
}
