// Training losses of a noise-prediction network, each with its gradient with
// respect to the network's output, side by side.
//
//   L_simple  (Ho et al. 2020, eq. 14): mean over elements of (eps - eps_theta)^2.
//   L_vlb     (Ho et al. 2020, eq. 5; Nichol & Dhariwal 2021, sec. 3): per t,
//             L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))  for t > 0 (0-based t),
//             L_0     = -log p_theta(x_0 | x_1)                             for t = 0,
//             in bits per dimension (nats / ln 2, averaged over the dimensions of a sample).
//   L_hybrid  (Nichol & Dhariwal 2021, eq. 16): L_simple + lambda * L_vlb with
//             Sigma_theta = exp(frac log beta_t + (1 - frac) log beta~_t), frac = (v + 1) / 2 (eq. 15),
//             and a stop-gradient on the mean: L_vlb only trains v.
//   Other targets (Parameterization.swift): the MSE is on the network's target -- eps, x_0, or
//             v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho 2022) -- per sample times
//             w(t) = 1 or the Min-SNR-gamma weight (Hang et al. 2023); L_vlb's mean is then
//             mu~(x0^, x_t) with x0^ converted from the output (still a stop-gradient).
//
// Every per-element quantity is computed in Double.
import Foundation

public enum LossKind: String, CaseIterable, Codable, Sendable {
    case simple, hybrid
}

/// What -log p_theta(x_0 | x_1) (the t = 0 term of L_vlb) means for the data.
public enum DecoderKind: String, Sendable {
    /// Images scaled from 8-bit pixels to [-1, 1]: the discretised Gaussian decoder of
    /// Ho et al. 2020 sec. 3.3 (bins of width 2/255, the outer bins reaching +-infinity).
    case discretized8bit = "discretized-8bit"
    /// Continuous data (vectors): the Gaussian negative log density of x_0 under
    /// N(mu_theta(x_1), Sigma_theta(x_1)), a continuous NLL (may be negative).
    case gaussian
}

public enum Losses {
    static let ln2 = 0.693_147_180_559_945_3

    // MARK: L_simple

    /// L_simple = mean_i (eps_i - eps_theta_i)^2 over all `count` elements.
    /// Gradient: d L / d eps_theta_i = 2 (eps_theta_i - eps_i) / count, written into
    /// `gradient` at the same positions (stride lets the eps part of a wider output be addressed).
    public static func simple(prediction: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>,
                              gradient: UnsafeMutableBufferPointer<Float>) -> Double {
        let n = target.count
        precondition(prediction.count == n && gradient.count == n)
        let scale = 2 / Double(n)
        var sum = 0.0
        for i in 0..<n {
            let d = Double(prediction[i]) - Double(target[i])
            sum += d * d
            gradient[i] = Float(scale * d)
        }
        return sum / Double(n)
    }

    // MARK: KL between Gaussians

    /// KL(N(mean1, exp(logVar1)) || N(mean2, exp(logVar2))) per element, in nats:
    /// 0.5 (-1 + logVar2 - logVar1 + exp(logVar1 - logVar2) + (mean1 - mean2)^2 exp(-logVar2)).
    @inline(__always)
    public static func normalKL(mean1: Double, logVar1: Double, mean2: Double, logVar2: Double) -> Double {
        let d = mean1 - mean2
        return 0.5 * (-1 + logVar2 - logVar1 + exp(logVar1 - logVar2) + d * d * exp(-logVar2))
    }

    /// d normalKL / d logVar2 = 0.5 (1 - exp(logVar1 - logVar2) - (mean1 - mean2)^2 exp(-logVar2)).
    @inline(__always)
    public static func normalKLGradLogVar2(mean1: Double, logVar1: Double, mean2: Double, logVar2: Double) -> Double {
        let d = mean1 - mean2
        return 0.5 * (1 - exp(logVar1 - logVar2) - d * d * exp(-logVar2))
    }

    // MARK: the standard normal CDF

    static let sqrt2OverPi = (2 / Double.pi).squareRoot()

    /// Phi(x) ~ 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (Page 1977; as in Ho et al.'s and
    /// Nichol & Dhariwal's code). Absolute error below 2e-4.
    @inline(__always)
    public static func approxStandardNormalCDF(_ x: Double) -> Double {
        0.5 * (1 + tanh(sqrt2OverPi * (x + 0.044715 * x * x * x)))
    }

    /// d Phi / dx of the approximation: 0.5 (1 - tanh^2(u)) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    @inline(__always)
    public static func approxStandardNormalPDF(_ x: Double) -> Double {
        let th = tanh(sqrt2OverPi * (x + 0.044715 * x * x * x))
        return 0.5 * (1 - th * th) * sqrt2OverPi * (1 + 3 * 0.044715 * x * x)
    }

    // MARK: the discretised Gaussian decoder (t = 0, images)

    /// log p(x) of the bin holding x under N(mean, exp(logScale)^2), for x in [-1, 1] scaled from
    /// 8-bit pixels: the bin is [x - 1/255, x + 1/255], with the lowest bin reaching -infinity
    /// (x < -0.999) and the highest +infinity (x > 0.999) (Ho et al. 2020 eq. 13).
    /// Returns (log p, d log p / d logScale). Probabilities are clamped at 1e-12 (gradient 0 there).
    @inline(__always)
    public static func discretizedGaussianLogLikelihood(x: Double, mean: Double, logScale: Double) -> (Double, Double) {
        let centered = x - mean
        let invStd = exp(-logScale)
        let plusIn = invStd * (centered + 1.0 / 255.0)
        let minIn = invStd * (centered - 1.0 / 255.0)
        // d plusIn / d logScale = -plusIn, likewise for minIn.
        if x < -0.999 {
            let cdfPlus = approxStandardNormalCDF(plusIn)
            if cdfPlus < 1e-12 { return (log(1e-12), 0) }
            return (log(cdfPlus), approxStandardNormalPDF(plusIn) * -plusIn / cdfPlus)
        } else if x > 0.999 {
            let oneMinusCdfMin = 1 - approxStandardNormalCDF(minIn)
            if oneMinusCdfMin < 1e-12 { return (log(1e-12), 0) }
            return (log(oneMinusCdfMin), approxStandardNormalPDF(minIn) * minIn / oneMinusCdfMin)
        } else {
            let delta = approxStandardNormalCDF(plusIn) - approxStandardNormalCDF(minIn)
            if delta < 1e-12 { return (log(1e-12), 0) }
            let d = approxStandardNormalPDF(plusIn) * -plusIn - approxStandardNormalPDF(minIn) * -minIn
            return (log(delta), d / delta)
        }
    }

    /// Gaussian log density log N(x; mean, exp(logVar)) and its derivative with respect to logVar:
    /// -0.5 (log 2 pi + logVar + (x - mean)^2 exp(-logVar)),  d/d logVar = -0.5 (1 - (x - mean)^2 exp(-logVar)).
    @inline(__always)
    public static func gaussianLogDensity(x: Double, mean: Double, logVar: Double) -> (Double, Double) {
        let d = x - mean
        let q = d * d * exp(-logVar)
        return (-0.5 * (log(2 * Double.pi) + logVar + q), -0.5 * (1 - q))
    }
}

/// The result of one loss evaluation over a batch.
public struct LossValue: Sendable {
    /// What is minimised: L_simple, or L_simple + lambda * T * mean_batch(L_t) for hybrid.
    public var loss: Double
    /// The MSE term over the batch: L_simple, or with x0-/v-prediction and Min-SNR the mean of
    /// w(t) MSE(target, output).
    public var simple: Double
    /// mean over the batch of the per-sample L_vlb term L_t in bits per dim (0 for `simple`).
    public var vlbTerm: Double
    /// Classifier training: the fraction of the batch classified correctly (NaN otherwise).
    public var accuracy: Double = .nan
}

/// The loss of a noise-prediction network, with its gradient with respect to the network output.
///
/// Output layout per sample: `simple` -> M values (the target's prediction: eps_theta, x0_theta or
/// v_theta); `hybrid` -> 2M values, the first M that prediction, the last M the variance's v (for
/// images [2C, H, W]: channels 0..<C are the prediction, C..<2C are v).
///
/// Hybrid weighting (Nichol & Dhariwal 2021 sec. 3.1): L_vlb = sum_t L_t, estimated with uniform t as
/// T * L_t, so the per-sample objective is L_simple + lambda * T * L_t (L_t in bits per dim) --
/// identical to their code's `vb * num_timesteps / 1000` with lambda = 0.001.
public struct DiffusionLoss {
    public let kind: LossKind
    public let schedule: Schedule
    /// lambda of L_hybrid (`--vlb-weight`, default 0.001).
    public let vlbWeight: Double
    public let decoder: DecoderKind
    /// The network's target.
    public let prediction: PredictionType
    /// The per-sample weight of the MSE and Min-SNR's gamma.
    public let weighting: LossWeighting
    public let snrGamma: Double
    let logBeta: [Double]

    public init(kind: LossKind, schedule: Schedule, vlbWeight: Double = 0.001, decoder: DecoderKind,
                prediction: PredictionType = .eps, weighting: LossWeighting = .uniform, snrGamma: Double = 5) {
        self.kind = kind
        self.schedule = schedule
        self.vlbWeight = vlbWeight
        self.decoder = decoder
        self.prediction = prediction
        self.weighting = weighting
        self.snrGamma = snrGamma
        self.logBeta = schedule.beta.map { log($0) }
    }

    /// w(t), the weight of a sample's MSE at timestep t.
    public func weight(t: Int) -> Double {
        weighting == .uniform ? 1 : Parameterization.minSNRWeight(alphaBar: schedule.alphaBar[t], gamma: snrGamma, type: prediction)
    }

    /// Output values per sample for M input values.
    public func outputCount(sampleCount m: Int) -> Int { kind == .hybrid ? 2 * m : m }

    /// The log variance of p_theta(x_{t-1} | x_t): frac log beta_t + (1 - frac) log beta~_t,
    /// frac = (v + 1) / 2 (Nichol & Dhariwal 2021 eq. 15). d/dv = (log beta_t - log beta~_t) / 2.
    @inline(__always)
    public func modelLogVariance(v: Double, t: Int) -> Double {
        Posterior.learnedLogVariance(v: v, t: t, schedule: schedule)
    }

    /// The mean of p_theta(x_{t-1} | x_t) from eps_theta (Ho et al. eq. 11 written through x0_hat):
    /// x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t); mu = coef1 x0_hat + coef2 x_t (eq. 7).
    @inline(__always)
    public func modelMean(xt: Double, epsHat: Double, t: Int) -> Double {
        let x0Hat = Posterior.predictX0(xt: xt, eps: epsHat, alphaBar: schedule.alphaBar[t])
        return Posterior.mean(x0: x0Hat, xt: xt, t: t, schedule: schedule)
    }

    /// The model mean from x0^ when the prediction gives it (x0-, v-prediction), else from eps^.
    @inline(__always)
    func modelMean(xt: Double, epsHat: UnsafeBufferPointer<Float>, x0Hat: UnsafeBufferPointer<Float>?, i: Int, t: Int) -> Double {
        if let x0Hat { return Posterior.mean(x0: Double(x0Hat[i]), xt: xt, t: t, schedule: schedule) }
        return modelMean(xt: xt, epsHat: Double(epsHat[i]), t: t)
    }

    /// L_t of one sample in bits per dim and d L_t / d v per element (written into gradV).
    /// The mean uses eps_theta (or x0^, when given) as a constant (stop-gradient).
    public func vlbTerm(x0: UnsafeBufferPointer<Float>, xt: UnsafeBufferPointer<Float>, epsHat: UnsafeBufferPointer<Float>,
                        x0Hat: UnsafeBufferPointer<Float>? = nil,
                        v: UnsafeBufferPointer<Float>, t: Int, gradV: UnsafeMutableBufferPointer<Float>?) -> Double {
        let m = x0.count
        let toBitsPerDim = 1 / (Double(m) * Losses.ln2)
        let dLogVarDv = 0.5 * (logBeta[t] - schedule.posteriorLogVarianceClipped[t])
        var sum = 0.0
        if t > 0 {
            // KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)): the true posterior has mean
            // coef1 x0 + coef2 x_t and log variance log beta~_t (clipped).
            let trueLogVar = schedule.posteriorLogVarianceClipped[t]
            for i in 0..<m {
                let xti = Double(xt[i])
                let trueMean = Posterior.mean(x0: Double(x0[i]), xt: xti, t: t, schedule: schedule)
                let mean = modelMean(xt: xti, epsHat: epsHat, x0Hat: x0Hat, i: i, t: t)
                let logVar = modelLogVariance(v: Double(v[i]), t: t)
                sum += Losses.normalKL(mean1: trueMean, logVar1: trueLogVar, mean2: mean, logVar2: logVar)
                if let gradV {
                    let g = Losses.normalKLGradLogVar2(mean1: trueMean, logVar1: trueLogVar, mean2: mean, logVar2: logVar)
                    gradV[i] = Float(g * dLogVarDv * toBitsPerDim)
                }
            }
        } else {
            // -log p_theta(x_0 | x_1).
            for i in 0..<m {
                let xti = Double(xt[i])
                let mean = modelMean(xt: xti, epsHat: epsHat, x0Hat: x0Hat, i: i, t: 0)
                let logVar = modelLogVariance(v: Double(v[i]), t: 0)
                let lp: Double, dLogVar: Double
                switch decoder {
                case .discretized8bit:
                    // log scale = logVar / 2
                    let (l, dls) = Losses.discretizedGaussianLogLikelihood(x: Double(x0[i]), mean: mean, logScale: 0.5 * logVar)
                    lp = l; dLogVar = 0.5 * dls
                case .gaussian:
                    (lp, dLogVar) = Losses.gaussianLogDensity(x: Double(x0[i]), mean: mean, logVar: logVar)
                }
                sum -= lp
                if let gradV { gradV[i] = Float(-dLogVar * dLogVarDv * toBitsPerDim) }
            }
        }
        return sum * toBitsPerDim
    }

    /// Evaluates the loss over a batch of n samples of m values each and writes d loss / d output
    /// into `gradient` (n * outputCount(m) values). `x0`, `xt`, `eps` hold n * m values each.
    public func evaluate(output: [Float], x0: [Float], xt: [Float], eps: [Float], t: [Int],
                         gradient: inout [Float]) -> LossValue {
        let n = t.count
        precondition(n > 0 && x0.count % n == 0)
        let m = x0.count / n
        let w = outputCount(sampleCount: m)
        precondition(output.count == n * w && xt.count == n * m && eps.count == n * m)
        if gradient.count != n * w { gradient = [Float](repeating: 0, count: n * w) }
        let T = Double(schedule.T)
        var simpleSum = 0.0, vlbSum = 0.0
        // x0- and v-prediction: the target per sample, and x0^ for L_vlb's mean.
        var target = [Float](repeating: 0, count: prediction == .eps ? 0 : m)
        var x0Hat = [Float](repeating: 0, count: prediction != .eps && kind == .hybrid ? m : 0)
        output.withUnsafeBufferPointer { out in
        x0.withUnsafeBufferPointer { x0p in
        xt.withUnsafeBufferPointer { xtp in
        eps.withUnsafeBufferPointer { ep in
        target.withUnsafeMutableBufferPointer { tg in
        x0Hat.withUnsafeMutableBufferPointer { xh in
        gradient.withUnsafeMutableBufferPointer { g in
            for s in 0..<n {
                let raw = UnsafeBufferPointer(rebasing: out[(s * w)..<(s * w + m)])
                let gOut = UnsafeMutableBufferPointer(rebasing: g[(s * w)..<(s * w + m)])
                let r = (s * m)..<(s * m + m)
                let abar = schedule.alphaBar[t[s]]
                let want: UnsafeBufferPointer<Float>
                if prediction == .eps {
                    want = UnsafeBufferPointer(rebasing: ep[r])
                } else {
                    for i in 0..<m {
                        tg[i] = Float(Parameterization.target(x0: Double(x0p[s * m + i]), eps: Double(ep[s * m + i]), alphaBar: abar, type: prediction))
                    }
                    want = UnsafeBufferPointer(tg)
                }
                // Per-sample mean_flat, then the batch mean: each element's gradient carries 1/(n m); times w(t).
                let mse = Losses.simple(prediction: raw, target: want, gradient: gOut)
                if weighting == .uniform {
                    simpleSum += mse
                    for i in 0..<m { gOut[i] /= Float(n) }
                } else {
                    let wt = weight(t: t[s])
                    simpleSum += wt * mse
                    for i in 0..<m { gOut[i] = Float(Double(gOut[i]) * wt / Double(n)) }
                }
                if kind == .hybrid {
                    let v = UnsafeBufferPointer(rebasing: out[(s * w + m)..<(s * w + 2 * m)])
                    let gV = UnsafeMutableBufferPointer(rebasing: g[(s * w + m)..<(s * w + 2 * m)])
                    var x0Given: UnsafeBufferPointer<Float>? = nil
                    if prediction != .eps {
                        // The mean from x0^ (eps^ is then not read; defined at abar = 0 too).
                        for i in 0..<m {
                            xh[i] = Float(Parameterization.convert(Double(raw[i]), xt: Double(xtp[s * m + i]), alphaBar: abar, type: prediction).x0)
                        }
                        x0Given = UnsafeBufferPointer(xh)
                    }
                    let term = vlbTerm(x0: UnsafeBufferPointer(rebasing: x0p[r]),
                                       xt: UnsafeBufferPointer(rebasing: xtp[r]),
                                       epsHat: raw, x0Hat: x0Given, v: v, t: t[s], gradV: gV)
                    vlbSum += term
                    let scale = Float(vlbWeight * T / Double(n))
                    for i in 0..<m { gV[i] *= scale }
                }
            }
        }}}}}}}
        let simple = simpleSum / Double(n)
        let vlb = vlbSum / Double(n)
        let loss = kind == .hybrid ? simple + vlbWeight * T * vlb : simple
        return LossValue(loss: loss, simple: simple, vlbTerm: vlb)
    }
}

// MARK: cross-entropy (the noise-aware classifier)

extension Losses {
    /// log sum_c exp(logits[row, c]) (max-shifted) and the softmax probabilities of that row.
    public static func logSoftmax(_ logits: [Float], row: Int, classes k: Int) -> (Double, [Double]) {
        var mx = -Double.infinity
        for c in 0..<k { mx = max(mx, Double(logits[row * k + c])) }
        var sum = 0.0
        var p = [Double](repeating: 0, count: k)
        for c in 0..<k { p[c] = exp(Double(logits[row * k + c]) - mx); sum += p[c] }
        for c in 0..<k { p[c] /= sum }
        return (mx + log(sum), p)
    }

    /// Cross-entropy mean_i -log softmax(logits_i)[y_i] over n rows of k logits; gradient
    /// d L / d logits = (softmax - onehot(y)) / n. Also returns the fraction of rows whose argmax is y.
    public static func crossEntropy(logits: [Float], labels: [Int], classes k: Int, gradient: inout [Float]) -> (loss: Double, accuracy: Double) {
        let n = labels.count
        precondition(logits.count == n * k)
        if gradient.count != n * k { gradient = [Float](repeating: 0, count: n * k) }
        var loss = 0.0, correct = 0
        for s in 0..<n {
            let (lse, p) = logSoftmax(logits, row: s, classes: k)
            loss += lse - Double(logits[s * k + labels[s]])
            var best = 0
            for c in 0..<k {
                gradient[s * k + c] = Float((p[c] - (c == labels[s] ? 1 : 0)) / Double(n))
                if logits[s * k + c] > logits[s * k + best] { best = c }
            }
            if best == labels[s] { correct += 1 }
        }
        return (loss / Double(n), Double(correct) / Double(n))
    }
}
