// `denoise --nll` against a closed form: Gaussian data with the exact analytic predictor.
//
// Data x_0 ~ N(mu, s^2) per coordinate, eps* exact. Then x0^(x_t) = E[x_0 | x_t] = mu + k (x_t - sqrt(abar) mu),
// k = sqrt(abar) s^2 / V, V = abar s^2 + 1 - abar, and for a GIVEN x_0 the error e = x_0 - x0^(x_t) is Gaussian:
//   e ~ N((x_0 - mu)(1 - k sqrt(abar)), k^2 (1 - abar))       (x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps)
// The model mean differs from the posterior mean by coef1 e, both variances are fixed, so each term's
// expectation over x_t | x_0 is exact:
//   t > 0: KL = 0.5 (-1 + lm - lt + exp(lt - lm) + coef1^2 E[e^2] exp(-lm)),  lt = log beta~_t, lm the model's log variance
//   t = 0: -log N(x_0; x0^, exp(lm)) -> 0.5 (log 2 pi + lm + E[e^2] exp(-lm))       (coef1_0 = 1, coef2_0 = 0)
//   L_T:   KL(N(sqrt(abar) x_0, 1 - abar) || N(0, 1)) = 0.5 (-1 - log(1 - abar) + 1 - abar + abar x_0^2)
// The tool draws one x_t per t and example, so its estimate is the exact value plus Monte-Carlo noise
// whose variance is also exact: Var(e^2) = 2 v^2 + 4 m^2 v for e ~ N(m, v). Tests assert 5 sigma.
import Foundation
import XCTest
@testable import Shared

final class ModelLikelihoodTests: XCTestCase {
    let mu = 0.3, s = 0.5
    let sched = Schedule.standard()

    /// The examples: n x D values from N(mu, s^2), stored as F32 (the closed form uses the stored values).
    func data(n: Int, d: Int) -> [Float] {
        var r = RandomStream(seed: 11, purpose: .toy, index: 0)
        return (0..<(n * d)).map { _ in Float(mu + s * Double(r.nextNormal())) }
    }

    /// The model's log variance at t: posterior (clipped beta~: beta~_1 at t = 0), beta, or learned with constant v.
    func modelLogVariance(_ kind: VarianceKind, v: Double, t: Int) -> Double {
        let abar = sched.alphaBar
        func logTilde(_ t: Int) -> Double { log(sched.beta[t] * (1 - (t > 0 ? abar[t - 1] : 1)) / (1 - abar[t])) }
        let clipped = t == 0 ? logTilde(1) : logTilde(t)
        switch kind {
        case .posterior: return clipped
        case .beta: return log(sched.beta[t])
        case .learned: let f = (v + 1) / 2; return f * log(sched.beta[t]) + (1 - f) * clipped
        }
    }

    /// Exact expectation of the tool's estimate (bits/dim, mean over examples), its Monte-Carlo standard
    /// deviation, the prior term and the exact per-t means. `strata` K: the stratified estimate
    /// (t uniform in each of K strata, weight |S_i|; nil: every t once). Per example the term at t is the
    /// mean over its d coordinates of (constant + b e^2); with t drawn per example, the variance of a
    /// stratum's contribution is w^2 (mean_t nu_t + var_t mu_t) (total variance over t in the stratum).
    func exact(x: [Float], d: Int, variance: VarianceKind, v: Double = 0, strata K: Int? = nil)
        -> (mean: Double, sd: Double, prior: Double, perT: [Double]) {
        let n = x.count / d
        let ln2 = log(2.0)
        let abar = sched.alphaBar, T = sched.T
        let k = K ?? (T - 1)
        let lo = (0...k).map { 1 + $0 * (T - 1) / k }           // stratum i is lo[i] ..< lo[i+1]
        // Per-t constants.
        var cst = [Double](repeating: 0, count: T), b = cst, shrink = cst, ve = cst
        for t in 0..<T {
            let a = abar[t], sa = a.squareRoot()
            let V = a * s * s + 1 - a, kk = sa * s * s / V
            let lm = modelLogVariance(variance, v: v, t: t)
            let c1 = t == 0 ? 1.0 : abar[t - 1].squareRoot() * sched.beta[t] / (1 - a)
            let lt = t == 0 ? 0 : log(sched.beta[t] * (1 - abar[t - 1]) / (1 - a))
            cst[t] = (t == 0 ? 0.5 * (log(2 * Double.pi) + lm) : 0.5 * (-1 + lm - lt + exp(lt - lm))) / ln2
            b[t] = 0.5 * c1 * c1 * exp(-lm) / ln2
            shrink[t] = 1 - kk * sa
            ve[t] = kk * kk * (1 - a)
        }
        var total = 0.0, varSum = 0.0, prior = 0.0
        var perT = [Double](repeating: 0, count: T)
        let aL = abar[T - 1]
        for j in 0..<n {
            let x0 = (0..<d).map { Double(x[j * d + $0]) }
            for v in x0 { prior += 0.5 * (-1 - log(1 - aL) + 1 - aL + aL * v * v) / ln2 / Double(d) }
            func term(_ t: Int) -> (mu: Double, nu: Double) {
                var mu = 0.0, nu = 0.0
                for v in x0 {
                    let m = (v - self.mu) * shrink[t]
                    mu += cst[t] + b[t] * (m * m + ve[t])
                    nu += b[t] * b[t] * (2 * ve[t] * ve[t] + 4 * m * m * ve[t])
                }
                return (mu / Double(d), nu / Double(d * d))
            }
            let t0 = term(0)
            total += t0.mu; varSum += t0.nu; perT[0] += t0.mu / Double(n)
            for i in 0..<k {
                let w = Double(lo[i + 1] - lo[i])
                var sMu = 0.0, sMu2 = 0.0, sNu = 0.0
                for t in lo[i] ..< lo[i + 1] {
                    let (mu, nu) = term(t)
                    sMu += mu; sMu2 += mu * mu; sNu += nu
                    perT[t] += mu / Double(n)
                }
                let meanMu = sMu / w
                total += w * meanMu                                 // = the sum over the stratum
                varSum += w * w * (sNu / w + max(0, sMu2 / w - meanMu * meanMu))
            }
        }
        return (total / Double(n) + prior / Double(n), varSum.squareRoot() / Double(n), prior / Double(n), perT)
    }

    func runNLL(_ x: [Float], d: Int, _ extra: [String], spec: String? = nil) throws -> [String: Double] {
        var f = Frame(metadata: ["kind": "batch"])
        f["x"] = Tensor(x, shape: [x.count / d, d])
        let r = try runTool("denoise", ["--analytic", spec ?? "gaussian mu=\(mu) sigma=\(s)", "--nll", "--terms", "--quiet", "--seed", "4"] + extra,
                            stdin: try encode([f]))
        XCTAssertEqual(r.status, 0, r.stderr)
        var rows: [String: Double] = [:]
        for line in String(decoding: r.stdout, as: UTF8.self).split(separator: "\n").dropFirst() {
            let c = line.split(separator: "\t")
            rows[String(c[0])] = Double(c[1])!
        }
        return rows
    }

    func testBoundMatchesTheClosedFormForEachVariance() throws {
        let d = 2, x = data(n: 5000, d: d)
        for (kind, args, v) in [(VarianceKind.posterior, [String](), 0.0), (.beta, ["--variance", "beta"], 0.0),
                                (.learned, ["--variance", "learned"], 0.4)] {
            let rows = try runNLL(x, d: d, args, spec: v != 0 ? "gaussian mu=\(mu) sigma=\(s) v=\(v)" : nil)
            let e = exact(x: x, d: d, variance: kind, v: v)
            let got = try XCTUnwrap(rows["total"])
            print("L_vlb \(kind): tool \(got), exact \(e.mean) +- \(e.sd) bits/dim")
            XCTAssertEqual(got, e.mean, accuracy: 5 * e.sd, "\(kind)")
            XCTAssertLessThan(e.sd, 0.02 * e.mean)      // MC noise below 2 %: the check catches errors above ~10 %
            // The prior term has no randomness.
            XCTAssertEqual(try XCTUnwrap(rows["\(sched.T)"]), e.prior, accuracy: 1e-6 * max(1, e.prior))
            XCTAssertEqual(rows.count, sched.T + 2)     // t = 0 ..< T, the prior row (t = T), total
            // The posterior variance makes every KL term t >= 1 a pure mean term: 0.5 c1^2 E[e^2]/beta~ >= 0.
            for t in [0, 1, 10, 500] { XCTAssertEqual(try XCTUnwrap(rows["\(t)"]), e.perT[t], accuracy: 0.15 * abs(e.perT[t]) + 1e-9, "t = \(t)") }
        }
    }

    func testTheBoundIsAnUpperBoundOnTheTrueNLL() throws {
        // The exact expectations (no Monte Carlo): each bound exceeds the true NLL -log2 N(x_0; mu, s^2)
        // averaged over the data. With beta as variance it is nearly tight here: for s < 1 the true reverse
        // variance at large t (beta~ + coef1^2 Var(x_0 | x_t)) is close to beta, while beta~ underestimates
        // it and the mean terms coef1^2 E[e^2] / (2 beta~) add up.
        let d = 2, x = data(n: 1500, d: d)
        var nll = 0.0
        for v in x { let z = (Double(v) - mu) / s; nll += 0.5 * (log(2 * Double.pi * s * s) + z * z) / log(2.0) }
        nll /= Double(x.count)
        let post = exact(x: x, d: d, variance: .posterior).mean, beta = exact(x: x, d: d, variance: .beta).mean
        let learned = exact(x: x, d: d, variance: .learned, v: 0.4).mean
        print("exact bounds: posterior \(post), beta \(beta), learned v=0.4 \(learned); true NLL \(nll) bits/dim")
        for bound in [post, beta, learned] { XCTAssertGreaterThan(bound, nll) }
        XCTAssertLessThan(beta - nll, 0.01)
        XCTAssertGreaterThan(post - nll, 0.5)
    }

    func testStratifiedEstimateIsUnbiased() throws {
        let d = 2, x = data(n: 5000, d: d)
        let K = 100
        let rows = try runNLL(x, d: d, ["--nll-steps", "\(K)"])
        let lows = (0..<K).map { 1 + $0 * (sched.T - 1) / K }
        XCTAssertEqual(Set(rows.keys), Set((["0", "\(sched.T)", "total"] + lows.map(String.init))))
        let strat = exact(x: x, d: d, variance: .posterior, strata: K)
        let full = exact(x: x, d: d, variance: .posterior)
        XCTAssertEqual(strat.mean, full.mean, accuracy: 1e-9 * full.mean)   // unbiased: the same expectation
        print("stratified K = \(K): tool \(rows["total"]!), exact \(strat.mean) +- \(strat.sd) (full-sum MC sd \(full.sd))")
        XCTAssertEqual(rows["total"]!, strat.mean, accuracy: 5 * strat.sd)
        XCTAssertLessThan(strat.sd, 0.05 * strat.mean)
    }

    func testBatchingDoesNotChangeTheEstimate() throws {
        let d = 3, x = data(n: 40, d: d)
        let p = GaussianMixturePredictor(components: [GaussianComponent(mu: mu, sigma: s)], schedule: sched, sampleShape: [d])
        let b = try VariationalBound(schedule: sched, predictor: p, variance: .posterior, decoder: .gaussian, steps: 50)
        let whole = try b.evaluate(x0: x, y: nil, seed: 3, firstIndex: 0).perExample
        let first = try b.evaluate(x0: Array(x[..<(15 * d)]), y: nil, seed: 3, firstIndex: 0).perExample
        let rest = try b.evaluate(x0: Array(x[(15 * d)...]), y: nil, seed: 3, firstIndex: 15).perExample
        XCTAssertEqual(whole, first + rest)
        XCTAssertThrowsError(try VariationalBound(schedule: sched, predictor: p, variance: .learned, decoder: .gaussian))
        XCTAssertThrowsError(try VariationalBound(schedule: sched, predictor: p, variance: .posterior, decoder: .gaussian, steps: 1000))
    }

    func testDiscretizedDecoderOnPixels() throws {
        // 8-bit data (values k/127.5 - 1): the bound of a continuous model is >= the entropy of the
        // discrete data; for data uniform on 4 pixel values that is 2 bits/dim. A tight predictor
        // (a narrow Gaussian mixture on those values) lands a little above 2.
        let levels: [Float] = [0, 85, 170, 255].map { Float($0) / 127.5 - 1 }
        var r = RandomStream(seed: 5, purpose: .toy, index: 1)
        let n = 2000, shape = [1, 1, 1]   // one pixel: the analytic mixture is over whole samples
        let x = (0..<n).map { _ in levels[r.nextInt(below: 4)] }
        var f = Frame(metadata: ["kind": "batch"]); f["x"] = Tensor(x, shape: [n] + shape)
        let spec = "mixture mu=\(levels.map { "\($0)" }.joined(separator: ",")) sigma=0.002"
        let res = try runTool("denoise", ["--analytic", spec, "--nll", "--quiet"], stdin: try encode([f]))
        XCTAssertEqual(res.status, 0, res.stderr)
        let bpd = Double(String(decoding: res.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))!
        print("4-level pixels: \(bpd) bits/dim")
        XCTAssertGreaterThan(bpd, 2 - 0.02)   // minus the MC noise
        XCTAssertLessThan(bpd, 4)
        // Out-of-range pixels are refused for the 8-bit decoder.
        var bad = f; bad["x"] = Tensor([Float](repeating: 3, count: n), shape: [n] + shape)
        let r2 = try runTool("denoise", ["--analytic", spec, "--nll", "--quiet"], stdin: try encode([bad]))
        XCTAssertEqual(r2.status, 1)
        XCTAssertTrue(r2.stderr.contains("outside [-1, 1]"), r2.stderr)
    }
}
