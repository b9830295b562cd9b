// What the network predicts, and the one place that turns its output into (eps, x_0):
//
//   x_t = a x_0 + s eps,   a = sqrt(abar_t), s = sqrt(1 - abar_t)            (Ho et al. 2020, eq. 4)
//   eps-prediction:  out = eps;  x_0 = (x_t - s eps) / a                       (undefined at abar = 0)
//   x0-prediction:   out = x_0;  eps = (x_t - a x_0) / s                       (undefined at abar = 1)
//   v-prediction:    out = v = a eps - s x_0                                   (Salimans & Ho 2022, sec. 4, eq. in App. D)
//                    x_0 = a x_t - s v,  eps = s x_t + a v                     (a^2 + s^2 = 1; defined for every abar)
//
// At abar = 0 (zero terminal SNR, Lin et al. 2024) v gives x_0 = -v and eps = x_t. The x0 case at
// s = 0 (abar rounds to 1 in Double: beta_0 below ~1e-16) has x_t = x_0 whatever eps is; eps = 0
// (its mean) is returned there. Where s is tiny but positive, eps = (x_t - a x_0) / s magnifies the
// network's error by 1/s: the solvers take x_0 as given (`Prediction.x0`), not this eps.
//
// Min-SNR-gamma weighting (Hang et al. 2023, sec. 3.4 and eq. 9-11), SNR = abar / (1 - abar):
//   x0: min(SNR, G);  eps: min(SNR, G) / SNR;  v: min(SNR, G) / (SNR + 1)
// -- each the weight min(SNR, G) on the x_0 error expressed in the MSE on that target, since
// |eps err|^2 = SNR |x0 err|^2 and |v err|^2 = (SNR + 1) |x0 err|^2 at fixed x_t. The eps weight is
// 1 for SNR <= G (also at SNR = 0, its limit); at SNR = infinity the eps and v weights are 0.
import Foundation

/// The target the network is trained on (`train --prediction`). Not `Prediction.v`: that is the
/// learned-variance interpolation of Nichol & Dhariwal (2021, eq. 15).
public enum PredictionType: String, CaseIterable, Codable, Sendable {
    case eps, x0, v

    /// Reads a model file's or checkpoint's `prediction` key (absent: eps, every older file).
    public init(metadataValue s: String?) throws {
        guard let s else { self = .eps; return }
        guard let p = PredictionType(rawValue: s) else {
            throw DDPMError("'prediction' is '\(String(s.prefix(40)))', expected eps, x0 or v")
        }
        self = p
    }
}

/// How the per-sample MSE is weighted over t.
public enum LossWeighting: String, CaseIterable, Codable, Sendable {
    /// Weight 1 (Ho et al. 2020, L_simple).
    case uniform
    /// min(SNR, gamma) expressed for the target (Hang et al. 2023).
    case minSNR = "min-snr"
}

public enum Parameterization {
    /// (eps, x_0) from a network output `out` of type `type` at x_t and abar (see the file head).
    @inline(__always)
    public static func convert(_ out: Double, xt: Double, alphaBar abar: Double, type: PredictionType) -> (eps: Double, x0: Double) {
        let a = abar.squareRoot(), s = (1 - abar).squareRoot()
        switch type {
        case .eps: return (out, (xt - s * out) / a)
        case .x0: return (s > 0 ? (xt - a * out) / s : 0, out)
        case .v: return (s * xt + a * out, a * xt - s * out)
        }
    }

    /// The training target of `type` for x_0 and eps at abar: eps, x_0, or v = a eps - s x_0.
    @inline(__always)
    public static func target(x0: Double, eps: Double, alphaBar abar: Double, type: PredictionType) -> Double {
        switch type {
        case .eps: return eps
        case .x0: return x0
        case .v: return abar.squareRoot() * eps - (1 - abar).squareRoot() * x0
        }
    }

    /// The network output of `type` that gives (eps, x_0) at abar (the inverse of `convert`).
    @inline(__always)
    public static func output(eps: Double, x0: Double, alphaBar abar: Double, type: PredictionType) -> Double {
        target(x0: x0, eps: eps, alphaBar: abar, type: type)
    }

    /// SNR(t) = abar / (1 - abar) (infinity where 1 - abar is 0).
    @inline(__always)
    public static func snr(alphaBar abar: Double) -> Double {
        abar < 1 ? abar / (1 - abar) : .infinity
    }

    /// The Min-SNR-gamma weight of the MSE on `type`'s target (Hang et al. 2023; file head).
    public static func minSNRWeight(alphaBar abar: Double, gamma g: Double, type: PredictionType) -> Double {
        let r = snr(alphaBar: abar)
        switch type {
        case .x0: return min(r, g)
        case .eps: return r <= g ? 1 : g / r
        case .v: return r.isInfinite ? 0 : min(r, g) / (r + 1)
        }
    }

    /// Converts a batch of raw outputs (n samples of d values, one abar per sample) in place of a
    /// `Prediction`: eps and, except for eps-prediction, x0. Works on the raw eps part only; v of a
    /// learned variance is kept as it is.
    public static func prediction(raw p: Prediction, x: [Float], alphaBar: [Double], type: PredictionType) -> Prediction {
        guard type != .eps else { return p }
        let n = alphaBar.count
        precondition(n > 0 && p.eps.count == x.count && x.count % n == 0)
        let d = x.count / n
        var eps = [Float](repeating: 0, count: x.count), x0 = eps
        for s in 0..<n {
            let abar = alphaBar[s]
            for i in s * d ..< (s + 1) * d {
                let c = convert(Double(p.eps[i]), xt: Double(x[i]), alphaBar: abar, type: type)
                eps[i] = Float(c.eps); x0[i] = Float(c.x0)
            }
        }
        return Prediction(eps: eps, v: p.v, x0: x0)
    }
}
