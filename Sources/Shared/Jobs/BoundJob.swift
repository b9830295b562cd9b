// `denoise nll`: the variational bound L_vlb = L_T + sum_t L_{t-1} + L_0 of every example on the
// input, in bits/dim (Likelihood.swift), printed as text: the mean, or with `terms` a TSV line per
// term and a final 'total' line.
import Foundation

public struct BoundJob {
    public let setup: PredictorSetup
    public let sampleShape: [Int]
    public var variance: VarianceKind = .posterior
    /// nil: the model's decoder, else discretized-8bit for images and gaussian for vectors.
    public var decoder: DecoderKind? = nil
    /// Strata of the stratified estimate (nil: every term).
    public var strata: Int? = nil
    public var terms = false
    public var seed: UInt64 = 0
    public var batch = 256
    public var offset = 0
    public var quiet = false

    public init(setup: PredictorSetup, sampleShape: [Int]) { self.setup = setup; self.sampleShape = sampleShape }

    public func run(reader: FrameReader, output: TextOutput) throws {
        if setup.spec.guidance != nil { throw DDPMError("the bound is that of the model itself: guidance does not apply") }
        let dec = decoder ?? setup.model?.metadata["decoder"].flatMap(DecoderKind.init(rawValue:))
            ?? (sampleShape.count == 3 ? .discretized8bit : .gaussian)
        let schedule = setup.schedule
        let bound = try VariationalBound(schedule: schedule, predictor: setup.predictor, variance: variance, decoder: dec, steps: strata)
        let rules = setup.rules(sampleShape: sampleShape)
        var perExample: [Double] = []
        var termSums: [Int: Double] = [:]
        var priorSum = 0.0
        var index = offset, frameNo = 0
        while let f = try reader.next() {
            frameNo += 1
            if f.kind == "schedule" { throw DDPMError("frame \(frameNo): a schedule frame inside the data (only a leading one is allowed)") }
            let input = try Batch(frame: f, index: frameNo, rules: rules)
            if dec == .discretized8bit, let bad = input.x.first(where: { $0 < -1.0001 || $0 > 1.0001 }) {
                throw DDPMError("frame \(frameNo): 'x' = \(bad) outside [-1, 1]; the discretized-8bit decoder needs data scaled from 8-bit pixels to [-1, 1]")
            }
            let b = input.count
            let y = try setup.labels(frameLabels: input.y, count: b, frame: frameNo)
            let progress = Progress(label: "denoise nll", total: b * bound.evaluations, quiet: quiet)
            for c in input.chunks(of: batch) {
                let r = try bound.evaluate(x0: input.samples(c), y: y.map { Array($0[c]) }, seed: seed, firstIndex: index,
                                           progress: { k in progress.update(c.lowerBound * bound.evaluations + k * c.count, unit: "example-steps") })
                perExample += r.perExample
                for (t, v) in r.termSums { termSums[t, default: 0] += v }
                priorSum += r.priorSum
                index += c.count
            }
        }
        guard !perExample.isEmpty else { throw DDPMError("no examples on stdin") }
        let n = Double(perExample.count)
        let mean = perExample.reduce(0, +) / n
        let sd = (perExample.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / max(n - 1, 1)).squareRoot()
        var out = ""
        if terms {
            out += "t\tbits_per_dim\n"
            for t in termSums.keys.sorted() { out += "\(t)\t" + String(format: "%.8g", termSums[t]! / n) + "\n" }
            out += "\(schedule.T)\t" + String(format: "%.8g", priorSum / n) + "\n"
            out += "total\t" + String(format: "%.8g", mean) + "\n"
        } else {
            out += String(format: "%.6f", mean) + "\n"
        }
        try output.write(out)
        if !quiet {
            let what = bound.strata.count == schedule.T - 1 ? "all \(schedule.T - 1) KL terms" : "\(bound.strata.count) strata of the \(schedule.T - 1) KL terms (stratified estimate)"
            warn("denoise", "L_vlb = " + String(format: "%.4f", mean) + " bits/dim over \(perExample.count) examples (standard error " +
                 String(format: "%.4f", sd / n.squareRoot()) + "; \(what), variance \(variance.rawValue), decoder \(dec.rawValue))")
        }
    }
}

/// `denoise score`: the score -eps / sqrt(1 - abar_t) of every input sample at its 't' (or the
/// given timestep), as frames of kind 'score' with x, t, score (and y).
public struct ScoreJob {
    public let setup: PredictorSetup
    public let sampleShape: [Int]
    /// The timestep of every sample when the frames carry no 't' (and the one they must carry).
    public var at: Int? = nil
    public var seed: UInt64 = 0
    public init(setup: PredictorSetup, sampleShape: [Int]) { self.setup = setup; self.sampleShape = sampleShape }

    public func run(reader: FrameReader, writer: FrameWriter) throws {
        let schedule = setup.schedule
        if let at, at < 0 || at >= schedule.T { throw DDPMError("timestep \(at) is outside 0 ... \(schedule.T - 1) (the schedule has T = \(schedule.T))") }
        var meta = setup.metadata(readsInput: true)
        meta["tool"] = "denoise"; meta["seed"] = String(seed)
        var rules = setup.rules(sampleShape: sampleShape)
        rules.T = schedule.T
        rules.allowNonFinite = true
        var frameNo = 0
        while let f = try reader.next() {
            frameNo += 1
            let input = try Batch(frame: f, index: frameNo, rules: rules)
            let b = input.count
            let t: [Int]
            if let ft = input.t {
                if let at, let bad = ft.first(where: { $0 != at }) { throw DDPMError("frame \(frameNo): 't' = \(bad) but the timestep asked is \(at)") }
                t = ft
            } else if let at {
                t = Array(repeating: at, count: b)
            } else {
                throw DDPMError("frame \(frameNo): no 't' tensor and no timestep given")
            }
            let y = try setup.labels(frameLabels: input.y, count: b, frame: frameNo)
            let sc = try Sampling.score(x: input.x, t: t, y: y, predictor: setup.predictor, schedule: schedule)
            var out = Frame(metadata: meta)
            out.kind = "score"
            out["x"] = f["x"]!
            out["t"] = Tensor(t.map { Int64($0) }, shape: [b])
            if let y { out["y"] = Tensor(y.map { Int64($0) }, shape: [b]) }
            out["score"] = Tensor(sc, shape: [b] + sampleShape)
            try writer.write(out)
        }
    }
}
