// Reading a trained noise-aware classifier p(y | x_t, t) as a feature extractor:
// its logits and its penultimate activations (the last hidden SiLU layer), the
// features for a Frechet distance between sample sets (Heusel et al. 2017 use
// Inception's pool layer the same way). Evaluation only: no gradients.

extension NoiseAwareClassifier {
    /// Logits [n, classes] and penultimate features [n, width] of x [n, M] at timesteps t.
    public func logitsAndFeatures(_ x: [Float], t: [Int]) -> (logits: [Float], features: [Float]) {
        let logits = forward(x, t: t, y: nil, training: false)
        // forward leaves each layer's output in its buffer; the last hidden activation is h_depth.
        let h = acts[depth - 1].out.ptr
        return (logits, Array(UnsafeBufferPointer(start: h, count: t.count * width)))
    }
}
