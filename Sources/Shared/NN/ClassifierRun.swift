// One data frame through a noise-aware classifier: the logic behind `classify`.

public enum ClassifierRun {
    /// The rules a data frame meets for `net`: 'x' of its input shape; 'y', when present, labels
    /// in 0 ..< net.classes (a label the classifier cannot answer is an error, not a miss).
    public static func rules(for net: any FeatureClassifier) -> BatchRules {
        BatchRules(sampleShape: net.inputShape, timesteps: false, classes: net.classes)
    }

    /// Logits, argmax and penultimate features of every sample of `batch` at timestep t, `size`
    /// samples per forward. The output frame keeps the input's metadata (kind 'classified').
    public static func classify(_ batch: Batch, net: any FeatureClassifier, t: Int, size: Int, keepX: Bool) -> (frame: Frame, correct: Int) {
        let n = batch.count, per = batch.sampleSize
        let k = net.classes, w = net.featureWidth
        var logits = [Float](), features = [Float](), pred = [Int64]()
        logits.reserveCapacity(n * k); features.reserveCapacity(n * w); pred.reserveCapacity(n)
        var start = 0
        while start < n {
            let m = min(size, n - start)
            let r = net.logitsAndFeatures(Array(batch.x[(start * per)..<((start + m) * per)]), t: [Int](repeating: t, count: m))
            logits += r.logits
            features += r.features
            for i in 0..<m {
                var best = 0
                for c in 1..<k where r.logits[i * k + c] > r.logits[i * k + best] { best = c }
                pred.append(Int64(best))
            }
            start += m
        }
        var out = Frame(metadata: batch.frame.metadata)
        out.kind = "classified"
        out.metadata["tool"] = "classify"
        out.metadata["t"] = String(t)
        if keepX, let x = batch.frame["x"] { out["x"] = x }
        out["logits"] = Tensor(logits, shape: [n, k])
        out["pred"] = Tensor(pred, shape: [n])
        out["features"] = Tensor(features, shape: [n, w])
        var correct = 0
        if let ys = batch.y {
            out["y"] = Tensor(ys.map { Int64($0) }, shape: [n])
            correct = zip(ys, pred).filter { Int64($0) == $1 }.count
        }
        return (out, correct)
    }

    /// A classifier file for `classify`: kind 'classifier' and a network with features.
    public static func load(path: String) throws -> (model: LoadedModel, net: any FeatureClassifier) {
        let loaded = try ModelFile.load(path: path)
        guard loaded.metadata["kind"] == "classifier", let net = loaded.network as? any FeatureClassifier else {
            throw DDPMError("\(path) is not a classifier (kind '\(loaded.metadata["kind"] ?? "none")', expected 'classifier')")
        }
        return (loaded, net)
    }
}
