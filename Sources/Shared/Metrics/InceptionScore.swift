// The Inception-score analogue (Salimans et al. 2016) with the classifier in place of Inception:
//   IS = exp( E_x KL( p(y|x) || p(y) ) ),  p(y|x) = softmax(logits(x)),  p(y) = E_x p(y|x),
//   KL(p || q) = sum_y p_y (log p_y - log q_y),
// over the whole set at once (no splits), softmax and logs in Double (log-sum-exp). It lies in
// [1, K]: 1 when every sample gets the same distribution, K when each is confidently one class
// and the classes are equally frequent.
import Foundation

public enum InceptionScore {
    /// IS of n rows of K logits (row-major).
    public static func of(logits: [Float], count n: Int, classes k: Int) -> Double {
        precondition(logits.count == n * k && n >= 1 && k >= 1, "InceptionScore: \(logits.count) logits for \(n) x \(k)")
        var logp = [Double](repeating: 0, count: n * k)   // log p(y|x)
        var marginal = [Double](repeating: 0, count: k)
        for i in 0..<n {
            var top = -Double.infinity
            for c in 0..<k { top = max(top, Double(logits[i * k + c])) }
            var z = 0.0
            for c in 0..<k { z += exp(Double(logits[i * k + c]) - top) }
            let lse = top + log(z)
            for c in 0..<k {
                let l = Double(logits[i * k + c]) - lse
                logp[i * k + c] = l
                marginal[c] += exp(l)
            }
        }
        let logMarginal = marginal.map { log($0 / Double(n)) }
        var kl = 0.0
        for i in 0..<n {
            var s = 0.0
            for c in 0..<k {
                let l = logp[i * k + c]
                let p = exp(l)
                if p > 0 { s += p * (l - logMarginal[c]) }
            }
            kl += s
        }
        return exp(kl / Double(n))
    }
}
