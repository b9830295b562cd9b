// One data frame through a noise-aware classifier: the logic behind `classify`.

public enum ClassifierRun {
    /// Logits, argmax and penultimate features of every sample of `frame`'s x at timestep t.
    public static func classify(_ frame: Frame, net: any FeatureClassifier, t: Int, batch: Int, keepX: Bool) throws -> (frame: Frame, correct: Int) {
        let x = try frame.require("x")
        guard let n = x.shape.first else { throw DDPMError("'x' is a scalar") }
        let per = net.inputShape.reduce(1, *)
        guard Array(x.shape.dropFirst()).reduce(1, *) == per else {
            throw DDPMError("'x' has samples of shape \(Array(x.shape.dropFirst())); the classifier takes \(net.inputShape)")
        }
        let xs = x.floats
        let k = net.classes, w = net.featureWidth
        var logits = [Float](), features = [Float](), pred = [Int64]()
        logits.reserveCapacity(n * k); features.reserveCapacity(n * w); pred.reserveCapacity(n)
        var start = 0
        while start < n {
            let m = min(batch, n - start)
            let r = net.logitsAndFeatures(Array(xs[(start * per)..<((start + m) * per)]), t: [Int](repeating: t, count: m))
            logits += r.logits
            features += r.features
            for i in 0..<m {
                var best = 0
                for c in 1..<k where r.logits[i * k + c] > r.logits[i * k + best] { best = c }
                pred.append(Int64(best))
            }
            start += m
        }
        var out = Frame(metadata: frame.metadata)
        out.kind = "classified"
        out.metadata["tool"] = "classify"
        out.metadata["t"] = String(t)
        if keepX { out["x"] = x }
        out["logits"] = Tensor(logits, shape: [n, k])
        out["pred"] = Tensor(pred, shape: [n])
        out["features"] = Tensor(features, shape: [n, w])
        var correct = 0
        if let y = frame["y"] {
            let ys = try y.integers()
            guard ys.count == n else { throw DDPMError("'y' has \(ys.count) labels for \(n) samples") }
            out["y"] = Tensor(ys, shape: [n])
            correct = zip(ys, pred).filter { $0 == $1 }.count
        }
        return (out, correct)
    }
}
