// UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
// Diffusion Models"), order 2, data prediction, B(h) = e^{-h} - 1 ("bh2"): diffusers'
// UniPCMultistepScheduler with its defaults. Notation of DPMSolverPP.swift: a, s, lambda = log(a/s),
// x0^_k the data prediction at level k; the step at level i goes to i - 1 (primes).
//   UniC, the corrector, first: with h = lambda_i - lambda_{i+1}, m0 = x0^_{i+1}, x_{i+1} the previous
//   step's corrected input and x0^_i the prediction at the (uncorrected) x_i,
//     x_i <- (s_i/s_{i+1}) x_{i+1} - a_i (e^{-h} - 1) m0 - a_i B(h) (rho_1 D_1 + rho_t (x0^_i - m0))
//     order 1: rho_t = 1/2, no D_1.  order 2: r = (lambda_{i+2} - lambda_{i+1}) / h, D_1 = (x0^_{i+2} - m0) / r,
//     rho_1 + rho_t = g_1, r rho_1 + rho_t = g_2, with hh = -h, p_1 = (e^{hh} - 1)/hh - 1, p_2 = p_1/hh - 1/2,
//     g_1 = p_1 / B(h), g_2 = 2 p_2 / B(h)                                    (UniC, eq. 8 / Algorithm 2)
//   UniP-2, the predictor, from the corrected x_i (rho = 1/2: it is DPM-Solver++ 2M):
//     r = (lambda_{i+1} - lambda_i) / h', D_1 = (x0^_{i+1} - x0^_i) / r,  h' = lambda_{i-1} - lambda_i
//     x_{i-1} = (s'/s) x_i - a' (e^{-h'} - 1) x0^_i - a' B(h') D_1 / 2
// Order min(2, steps done + 1, steps left) (warm-up and lower_order_final); the corrector uses the
// order of the previous predictor. No second prediction at the corrected x: one per step. The last
// step is first order to s' = 0 and returns x0^_0.
import Foundation

public struct UniPCStep: ReverseSolver {
    public let plan: SamplingPlan
    public let rule: X0Rule
    private var lastX: [Double]? = nil
    private var history: [(x0: [Double], lambda: Double)] = []   // newest last: levels i+1, i+2
    private var lastOrder = 1

    public init(plan: SamplingPlan, rule: X0Rule = .none) { self.plan = plan; self.rule = rule }
    public var needsVariance: Bool { false }

    func lambda(level i: Int) -> Double { let (a, s) = plan.alphaSigma(level: i); return log(a) - log(s) }

    public mutating func step(level i: Int, x: inout [Float], prediction p: Prediction, sampleSize d: Int,
                              x0: inout [Float], noise: inout [RandomStream],
                              evaluate: (_ x: [Float], _ level: Int) throws -> Prediction) throws {
        let K = plan.stepCount
        if i == K - 1 { lastX = nil; history = []; lastOrder = 1 }   // a new run
        let est = try X0Estimate.estimate(x: x, prediction: p, alphaBar: plan.alphaBar(level: i), sampleSize: d, rule: rule, t: plan.timesteps[i])
        let (a, s) = plan.alphaSigma(level: i)
        let lam = lambda(level: i)
        var xc = x.map(Double.init)
        // UniC.
        if let last = lastX, let m0 = history.last, m0.lambda.isFinite {
            let h = lam - m0.lambda
            let sPrev = plan.alphaSigma(level: i + 1).s
            let em = exp(-h), bh = em - 1
            var rho1 = 0.0, rhoT = 0.5
            var older: [Double]? = nil, r = 1.0
            if lastOrder == 2, history.count >= 2, history[history.count - 2].lambda.isFinite {
                let m1 = history[history.count - 2]
                r = (m1.lambda - m0.lambda) / h
                let hh = -h
                let p1 = expm1(hh) / hh - 1, p2 = p1 / hh - 0.5
                let g1 = p1 / bh, g2 = 2 * p2 / bh
                rho1 = (g1 - g2) / (1 - r); rhoT = g1 - rho1
                older = m1.x0
            }
            for j in 0..<xc.count {
                let d1 = older.map { ($0[j] - m0.x0[j]) / r } ?? 0
                xc[j] = (s / sPrev) * last[j] - a * bh * m0.x0[j] - a * bh * (rho1 * d1 + rhoT * (est.x0[j] - m0.x0[j]))
            }
        }
        // UniP.
        let order = min(2, history.count + 1, i + 1)
        let (aNext, sNext) = plan.alphaSigma(level: i - 1)
        let em = aNext > 0 ? a * sNext / (s * aNext) : 0       // e^{-h'}
        let bh = em - 1
        var out = [Float](repeating: 0, count: xc.count)
        let prev = history.last
        let r = order == 2 ? (prev!.lambda - lam) / (lambda(level: i - 1) - lam) : 1
        for j in 0..<xc.count {
            x0[j] = Float(est.x0[j])
            if i == 0 { out[j] = Float(est.x0[j]); continue }
            let d1 = order == 2 ? (prev!.x0[j] - est.x0[j]) / r : 0
            out[j] = Float((sNext / s) * xc[j] - aNext * bh * est.x0[j] - aNext * bh * 0.5 * d1)
        }
        lastX = xc
        history.append((est.x0, lam))
        if history.count > 2 { history.removeFirst() }
        lastOrder = order
        x = out
    }
}
