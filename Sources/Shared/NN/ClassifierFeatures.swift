// Reading a trained noise-aware classifier p(y | x_t, t) as a feature extractor:
// its logits and its penultimate activations, the features for a Frechet distance
// between sample sets (Heusel et al. 2017 use Inception's pool layer the same way).
// Evaluation only: no gradients.

/// A classifier that `classify` can run: logits [n, classes] and penultimate
/// features [n, featureWidth] of x [n, M] at timesteps t.
public protocol FeatureClassifier: Network {
    var classes: Int { get }
    var featureWidth: Int { get }
    func logitsAndFeatures(_ x: [Float], t: [Int]) -> (logits: [Float], features: [Float])
}

extension NoiseAwareClassifier: FeatureClassifier {
    /// The last hidden SiLU layer.
    public var featureWidth: Int { width }
    public func logitsAndFeatures(_ x: [Float], t: [Int]) -> (logits: [Float], features: [Float]) {
        let logits = forward(x, t: t, y: nil, training: false)
        // forward leaves each layer's output in its buffer; the last hidden activation is h_depth.
        let h = acts[depth - 1].out.ptr
        return (logits, Array(UnsafeBufferPointer(start: h, count: t.count * width)))
    }
}

extension NoiseAwareUNetClassifier: FeatureClassifier {
    /// The pooled encoder output (mean over positions of GroupNorm+SiLU), the head's input.
    public var featureWidth: Int { channels * mults.last! }
    public func logitsAndFeatures(_ x: [Float], t: [Int]) -> (logits: [Float], features: [Float]) {
        let logits = forward(x, t: t, y: nil, training: false)
        return (logits, Array(UnsafeBufferPointer(start: pooled.ptr, count: t.count * featureWidth)))
    }
}
