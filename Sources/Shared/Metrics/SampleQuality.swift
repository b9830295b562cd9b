// The sample-quality figures of a classified set against a classified reference set of real
// data (the logic behind `evaluate`): the fraction classified as the intended label, the
// Frechet distance on the features and on the logits (FrechetDistance.swift), the Inception-score
// analogue (InceptionScore.swift), and k-NN precision and recall on the features
// (PrecisionRecall.swift). The reference's moments, square roots and k-NN radii are computed once.
import Foundation

public struct QualityFigures: Sendable, Equatable {
    public var count: Int
    /// pred == y, when the set is labelled.
    public var asLabelled: Double?
    public var fdFeatures: Double
    public var fdLogits: Double
    public var inceptionScore: Double
    public var precision: Double
    public var recall: Double
}

public final class QualityReference {
    public let set: ClassifiedSet
    public let k: Int
    let features: GaussianMoments, logits: GaussianMoments
    let featureSqrt: [Double], logitSqrt: [Double]
    let manifold: PrecisionRecall.Manifold

    /// Needs more than k samples (and k >= 1).
    public init(_ set: ClassifiedSet, k: Int) throws {
        guard k >= 1 else { throw DDPMError("the neighbourhood size k must be at least 1, got \(k)") }
        guard set.count > k, set.count >= 2 else {
            throw DDPMError("\(set.name): \(set.count) samples, precision and recall with k = \(k) need at least \(max(k + 1, 2))")
        }
        self.set = set; self.k = k
        features = GaussianMoments(rows: set.features, count: set.count, dimension: set.featureWidth)
        logits = GaussianMoments(rows: set.logits, count: set.count, dimension: set.classes)
        featureSqrt = features.covarianceSquareRoot
        logitSqrt = logits.covarianceSquareRoot
        manifold = PrecisionRecall.Manifold(rows: set.features, count: set.count, width: set.featureWidth, k: k, origin: features.mean)
    }

    /// The figures of `s` (same feature width and classes as the reference).
    public func figures(for s: ClassifiedSet) throws -> QualityFigures {
        guard s.featureWidth == set.featureWidth else {
            throw DDPMError("\(s.name) has \(s.featureWidth) features per sample, the reference \(set.name) has \(set.featureWidth): not the same classifier?")
        }
        guard s.classes == set.classes else {
            throw DDPMError("\(s.name) has \(s.classes) classes, the reference \(set.name) has \(set.classes): not the same classifier?")
        }
        guard s.count > k, s.count >= 2 else {
            throw DDPMError("\(s.name): \(s.count) samples, precision and recall with k = \(k) need at least \(max(k + 1, 2))")
        }
        let fm = GaussianMoments(rows: s.features, count: s.count, dimension: s.featureWidth)
        let lm = GaussianMoments(rows: s.logits, count: s.count, dimension: s.classes)
        let fd = FrechetDistance.between(fm, features, sqrtB: featureSqrt).distance
        let fl = FrechetDistance.between(lm, logits, sqrtB: logitSqrt).distance
        let m = PrecisionRecall.Manifold(rows: s.features, count: s.count, width: s.featureWidth, k: k, origin: features.mean)
        let pr = PrecisionRecall.compute(samples: m, reference: manifold)
        return QualityFigures(count: s.count, asLabelled: s.asLabelled, fdFeatures: fd, fdLogits: fl,
                              inceptionScore: InceptionScore.of(logits: s.logits, count: s.count, classes: s.classes),
                              precision: pr.precision, recall: pr.recall)
    }
}
