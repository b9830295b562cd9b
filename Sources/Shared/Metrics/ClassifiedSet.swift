// A whole set of `classify` output: the frames of kind 'classified' of one stream ('features'
// F32 [N,W], 'logits' F32 [N,K], 'pred' integer [N], optional 'y' integer [N]; docs/FORMAT.md
// section 3), gathered for the sample-quality figures. Every size is checked against the bounds
// below before anything grows, and non-finite features or logits are refused, naming the frame.
import Foundation

public struct ClassifiedSet: Sendable {
    /// The stream it came from ("stdin" or a path), for messages.
    public var name: String
    public var count: Int
    public var featureWidth: Int
    public var classes: Int
    /// count x featureWidth
    public var features: [Float]
    /// count x classes
    public var logits: [Float]
    public var pred: [Int64]
    /// The intended labels, when every frame has 'y'.
    public var labels: [Int64]?

    /// At most this many samples per set.
    public static let maxSamples = 1_000_000
    /// At most this many features (and classes) per sample: the covariances are W x W.
    public static let maxWidth = 2048
    /// At most this many values (count x (features + classes)) per set: 1 GiB as F32.
    public static let maxValues = 1 << 28

    /// The fraction of samples classified as their label (pred == y), when labelled.
    public var asLabelled: Double? {
        guard let labels, count > 0 else { return nil }
        return Double(zip(pred, labels).filter { $0 == $1 }.count) / Double(count)
    }

    /// The first n samples.
    public func prefix(_ n: Int) -> ClassifiedSet {
        var s = self
        let m = min(n, count)
        s.count = m
        s.features = Array(features.prefix(m * featureWidth))
        s.logits = Array(logits.prefix(m * classes))
        s.pred = Array(pred.prefix(m))
        s.labels = labels.map { Array($0.prefix(m)) }
        return s
    }

    /// Reads the classified frames of `reader` (schedule frames are skipped), at most `limit`
    /// samples: reading stops once that many are in.
    public static func read(_ reader: FrameReader, limit: Int? = nil) throws -> ClassifiedSet {
        let cap = min(limit ?? maxSamples, maxSamples)
        var set = ClassifiedSet(name: reader.name, count: 0, featureWidth: 0, classes: 0, features: [], logits: [], pred: [], labels: nil)
        var labelled: Bool? = nil
        var frames = 0
        while limit == nil || set.count < cap, let frame = try reader.next() {
            if frame.kind == "schedule" { continue }
            let index = reader.framesRead
            func fail(_ message: String) -> DDPMError { DDPMError("\(reader.name): frame \(index): \(message)") }
            guard frame["features"] != nil, frame["logits"] != nil, frame["pred"] != nil else {
                throw fail("not a classified frame: needs 'features', 'logits' and 'pred' (it has: \(frame.names.listedForMessage())); run classify on it")
            }
            let f = frame["features"]!, l = frame["logits"]!, p = frame["pred"]!
            guard f.shape.count == 2, let n = f.shape.first else { throw fail("'features' must have shape [N, W], found \(f.shape)") }
            guard l.shape.count == 2, l.shape[0] == n else { throw fail("'logits' must have shape [\(n), K], found \(l.shape)") }
            guard p.shape == [n] else { throw fail("'pred' must have shape [\(n)], found \(p.shape)") }
            let w = f.shape[1], k = l.shape[1]
            guard w >= 1, w <= maxWidth else { throw fail("'features' has width \(w), outside 1 ... \(maxWidth)") }
            guard k >= 1, k <= maxWidth else { throw fail("'logits' has \(k) classes, outside 1 ... \(maxWidth)") }
            guard f.dtype == .f32 || f.dtype == .f64, l.dtype == .f32 || l.dtype == .f64 else {
                throw fail("'features' and 'logits' must be F32 (or F64), found \(f.dtype.rawValue) and \(l.dtype.rawValue)")
            }
            if frames > 0 {
                guard w == set.featureWidth else { throw fail("'features' has width \(w), the frames before \(set.featureWidth)") }
                guard k == set.classes else { throw fail("'logits' has \(k) classes, the frames before \(set.classes)") }
            }
            let has = frame["y"] != nil
            if let labelled, labelled != has {
                throw fail(has ? "has 'y' but the frames before had none: label every frame or none"
                               : "has no 'y' but the frames before had: label every frame or none")
            }
            labelled = has
            frames += 1
            set.featureWidth = w; set.classes = k
            if n == 0 { continue }
            if limit == nil && set.count + n > maxSamples {
                throw fail("the set exceeds \(maxSamples) samples")
            }
            let take = min(n, cap - set.count)
            guard (set.count + take) * (w + k) <= maxValues else {
                throw fail("the set exceeds \(maxValues) values (samples x (features + classes))")
            }
            let fv = f.floats, lv = l.floats
            if let bad = fv.prefix(take * w).firstIndex(where: { !$0.isFinite }) {
                throw fail("'features' holds a non-finite value (\(fv[bad])) at element \(bad)")
            }
            if let bad = lv.prefix(take * k).firstIndex(where: { !$0.isFinite }) {
                throw fail("'logits' holds a non-finite value (\(lv[bad])) at element \(bad)")
            }
            let pv: [Int64], yv: [Int64]?
            do {
                pv = try p.integers()
                yv = try frame["y"].map { y in
                    guard y.shape == [n] else { throw DDPMError("'y' must have shape [\(n)], found \(y.shape)") }
                    return try y.integers()
                }
            } catch let e as DDPMError { throw fail(e.message) }
            set.features += fv.prefix(take * w)
            set.logits += lv.prefix(take * k)
            set.pred += pv.prefix(take)
            if let yv { set.labels = set.labels ?? []; set.labels!.append(contentsOf: yv.prefix(take)) }
            set.count += take
        }
        if frames == 0 {
            throw DDPMError("\(reader.name): no classified frames (\(reader.framesRead == 0 ? "empty stream" : "only schedule frames"))")
        }
        if set.count == 0 { throw DDPMError("\(reader.name): no samples (every frame is empty)") }
        if labelled != true { set.labels = nil }
        return set
    }
}
