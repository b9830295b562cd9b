// The variational bound on the negative log-likelihood, per example, in bits per dimension
// (Ho et al. 2020 eq. 5 and Table 2; Nichol & Dhariwal 2021 sec. 3, "calc_bpd_loop"):
//
//   L_vlb = L_T + sum_{t=1}^{T-1} L_{t-1} + L_0            (0-based t below: x_t, t = 0 .. T-1)
//   L_T   = KL(q(x_{T-1} | x_0) || N(0, I)),  q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)   (prior, exact)
//   t > 0: KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
//   t = 0: -log p_theta(x_0 | x_t=0)  (discretised 8-bit Gaussian decoder, or Gaussian density for vectors)
//
// The t >= 0 terms are `DiffusionLoss.vlbTerm` (Losses.swift: one formula, one place), fed with the
// predictor's eps (or its x0 when it gives one: x0-, v-prediction, defined at abar = 0 too) and a log variance given through v: the learned v of a hybrid model, or
// v = -1 -> log beta~_t clipped (`posterior`), v = +1 -> log beta_t (`beta`) (Nichol & Dhariwal eq. 15
// at its ends). Each KL is a single-sample Monte-Carlo estimate over x_t given x_0 (one eps per t).
//
// Stratified estimate (`steps` = K < T - 1): 1 .. T-1 is cut into K strata S_i = [lo_i, lo_{i+1}),
// lo_i = 1 + floor(i (T - 1) / K), and the sum over t = 1 .. T-1 is replaced by
//   sum_i |S_i| L_{t_i},  t_i uniform in S_i, drawn per example
// an UNBIASED estimate of the full sum (E over t_i of |S_i| L_{t_i} = sum_{t in S_i} L_t); L_T and L_0
// are always exact/included. K = T - 1 is the full sum (every stratum one timestep, nothing drawn).
// (A fixed grid would be biased: the terms vary fastest at small t, where they are largest.)
//
// Randomness: example j draws its eps from RandomStream(seed, .noise, j), M normals per evaluation
// (t = 0 first, then the strata in ascending order), and its t_i from RandomStream(seed, .timestep, j)
// (`nextInt(below: |S_i|)`, strata in order, only for strata wider than 1): results do not depend on batching.
import Foundation

public final class VariationalBound {
    public let schedule: Schedule
    public let predictor: EpsPredictor
    public let variance: VarianceKind
    public let decoder: DecoderKind
    /// The strata of t = 1 ... T-1: [lo_i, hi_i), ascending.
    public let strata: [Range<Int>]
    let loss: DiffusionLoss

    public init(schedule: Schedule, predictor: EpsPredictor, variance: VarianceKind, decoder: DecoderKind, steps: Int? = nil) throws {
        guard schedule.T >= 2 else { throw DDPMError("the bound needs a schedule with T >= 2") }
        if variance == .learned && !predictor.learnsVariance {
            throw DDPMError("the learned variance needs a model with a learned variance (trained with the hybrid loss)")
        }
        if schedule.alphaBar.contains(0) && predictor.predictionType == .eps {
            throw DDPMError("the variational bound is undefined with alpha_bar = 0 (zero terminal SNR) for eps-prediction: x_0 cannot be predicted from eps there")
        }
        let n = schedule.T - 1
        let k = steps ?? n
        guard k >= 1 && k <= n else { throw DDPMError("the number of strata must lie in 1 ... \(n) (T - 1), got \(k)") }
        self.schedule = schedule
        self.predictor = predictor
        self.variance = variance
        self.decoder = decoder
        strata = (0..<k).map { i in (1 + i * n / k) ..< (1 + (i + 1) * n / k) }
        loss = DiffusionLoss(kind: .hybrid, schedule: schedule, decoder: decoder)
    }

    /// L_T in bits per dim for one example: mean_i KL(N(sqrt(abar) x0_i, 1 - abar) || N(0, 1)) / ln 2.
    public func priorTerm(_ x0: ArraySlice<Float>) -> Double {
        let tLast = schedule.T - 1
        let sa = schedule.sqrtAlphaBar[tLast], logVar = log(1 - schedule.alphaBar[tLast])
        var sum = 0.0
        for v in x0 { sum += Losses.normalKL(mean1: sa * Double(v), logVar1: logVar, mean2: 0, logVar2: 0) }
        return sum / (Double(x0.count) * Losses.ln2)
    }

    /// The result for a batch: per example the bound (bits/dim), and per evaluated timestep the
    /// sum over the batch of the (unweighted) term L_t, keyed by t (full sum) or by the stratum's
    /// lowest t (stratified); `prior` the batch sum of L_T.
    public struct Result {
        public var perExample: [Double]
        public var termSums: [Int: Double]
        public var priorSum: Double
    }

    /// Evaluates the bound for `x0` (n examples of the predictor's sample size), examples numbered
    /// from `firstIndex` (for the random streams). `y`: labels for a conditional model (nil: unconditional).
    public func evaluate(x0: [Float], y: [Int]?, seed: UInt64, firstIndex: Int, progress: ((Int) -> Void)? = nil) throws -> Result {
        let m = predictor.sampleSize
        guard m > 0, x0.count % m == 0 else { throw DDPMError("bound: \(x0.count) values are not whole samples of \(m)") }
        let n = x0.count / m
        var total = [Double](repeating: 0, count: n)
        var prior = 0.0
        for s in 0..<n {
            let p = priorTerm(x0[s * m ..< (s + 1) * m])
            total[s] = p; prior += p
        }
        var streams = (0..<n).map { RandomStream(seed: seed, purpose: .noise, index: UInt64(firstIndex + $0)) }
        var tStreams = (0..<n).map { RandomStream(seed: seed, purpose: .timestep, index: UInt64(firstIndex + $0)) }
        var sums: [Int: Double] = [:]
        let fixedV: Float = variance == .beta ? 1 : -1
        var xt = [Float](repeating: 0, count: n * m)
        for (k, stratum) in ([0 ..< 1] + strata).enumerated() {
            // t per example: the stratum's only timestep, or one drawn uniformly from it.
            let ts = (0..<n).map { s in stratum.count == 1 ? stratum.lowerBound : stratum.lowerBound + tStreams[s].nextInt(below: stratum.count) }
            for s in 0..<n {
                let sa = schedule.sqrtAlphaBar[ts[s]], so = schedule.sqrtOneMinusAlphaBar[ts[s]]
                for i in s * m ..< (s + 1) * m {
                    xt[i] = Float(ForwardProcess.qSample(x0: Double(x0[i]), eps: Double(streams[s].nextNormal()), a: sa, b: so))
                }
            }
            let t = stratum.lowerBound
            let p = try Sampling.predict(predictor, x: xt, t: ts, y: y, variance: variance == .learned)
            let v = p.v.flatMap { variance == .learned ? $0 : nil } ?? [Float](repeating: fixedV, count: n * m)
            let w = Double(stratum.count)
            var sum = 0.0
            x0.withUnsafeBufferPointer { x0p in
            xt.withUnsafeBufferPointer { xtp in
            p.eps.withUnsafeBufferPointer { ep in
            (p.x0 ?? []).withUnsafeBufferPointer { xh in
            v.withUnsafeBufferPointer { vp in
                for s in 0..<n {
                    let r = s * m ..< (s + 1) * m
                    let term = loss.vlbTerm(x0: UnsafeBufferPointer(rebasing: x0p[r]), xt: UnsafeBufferPointer(rebasing: xtp[r]),
                                            epsHat: UnsafeBufferPointer(rebasing: ep[r]),
                                            x0Hat: p.x0 == nil ? nil : UnsafeBufferPointer(rebasing: xh[r]), v: UnsafeBufferPointer(rebasing: vp[r]),
                                            t: ts[s], gradV: nil)
                    total[s] += w * term
                    sum += term
                }
            }}}}}
            sums[t] = sum
            progress?(k + 1)
        }
        return Result(perExample: total, termSums: sums, priorSum: prior)
    }

    /// Number of predictor evaluations per example batch (t = 0 and the KL timesteps).
    public var evaluations: Int { strata.count + 1 }
}
