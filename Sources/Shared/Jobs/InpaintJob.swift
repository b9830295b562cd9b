// `denoise inpaint`: RePaint (Diffusion/Sampling/Inpaint.swift) on x_0 frames read from stdin,
// with a mask of known pixels, any reverse solver and any predictor (guidance included). Output:
// frames of kind 'batch' with the completed x (and y when labelled). Sample j of the stream
// (counting from --offset) draws x_T and the solver's z from RandomStream(seed, .sampler, j) and
// the known region's noise from RandomStream(seed, .inpaint, j).

/// Which pixels are known: one mask for every sample, or one per sample of each frame.
public struct InpaintMask {
    /// Values in [0, 1] (1: known), `perSample` samples of d values (1: shared by all samples).
    public let values: [Float]
    public let perSample: Int

    /// From a tensor of shape `sampleShape`, [1] + sampleShape, or [N] + sampleShape (per sample);
    /// an image mask [1, H, W] also serves a [C, H, W] sample (every channel).
    public init(tensor t: Tensor, sampleShape: [Int]) throws {
        let d = sampleShape.reduce(1, *)
        var v = t.floats
        if let bad = v.first(where: { !($0 >= 0 && $0 <= 1) }) {
            throw DDPMError("mask value \(bad): mask values must lie in [0, 1] (1: known pixel)")
        }
        var shape = t.shape
        if shape == sampleShape { shape = [1] + shape }
        if shape.count == 3, sampleShape.count == 3, shape[0] == 1, Array(shape[1...]) == Array(sampleShape[1...]), sampleShape[0] > 1 {
            // One channel for all: repeat it.
            v = Array((0..<sampleShape[0]).map { _ in v }.joined())
            shape = [1] + sampleShape
        }
        guard shape.count == sampleShape.count + 1, Array(shape.dropFirst()) == sampleShape, shape[0] >= 1 else {
            throw DDPMError("mask of shape \(t.shape) does not fit samples of shape \(sampleShape) (give \(sampleShape), [1, H, W] or [N] + \(sampleShape))")
        }
        values = v
        perSample = shape[0]
        precondition(values.count == perSample * d)
    }

    /// Reads a mask file: a PNG (grey or colour: its first channel, 0 ... 1; white = known) or a
    /// frame file whose tensor 'mask' (else 'x') holds the mask.
    public static func load(path: String, sampleShape: [Int]) throws -> InpaintMask {
        do {
            if path.lowercased().hasSuffix(".png") {
                let img = try PNG.read(path: path)
                // The first channel plane (PNGImage holds C*H*W values in [-1, 1]), mapped to [0, 1].
                let first = img.data[0..<(img.width * img.height)].map { min(1, max(0, ($0 + 1) / 2)) }
                return try InpaintMask(tensor: Tensor(first, shape: [1, img.height, img.width]), sampleShape: sampleShape)
            }
            let f = try Frame.load(path: path)
            guard let t = f["mask"] ?? f["x"] else { throw DDPMError("no tensor 'mask' (or 'x') in the file") }
            return try InpaintMask(tensor: t, sampleShape: sampleShape)
        } catch let e as DDPMError { throw DDPMError("mask \(path): \(e.message)") }
    }

    /// The mask values of samples `range` of a frame of `count` samples.
    func values(for range: Range<Int>, of count: Int, sampleSize d: Int, frame index: Int) throws -> [Float] {
        if perSample == 1 { return Array((0..<range.count).map { _ in values }.joined()) }
        guard perSample == count else {
            throw DDPMError("frame \(index): \(count) samples but the mask holds \(perSample) (one mask, or one per sample)")
        }
        return Array(values[(range.lowerBound * d)..<(range.upperBound * d)])
    }
}

public struct InpaintJob {
    public let setup: PredictorSetup
    public let options: SamplerOptions
    public let repaint: RePaintOptions
    public let mask: InpaintMask
    public let sampleShape: [Int]
    public var seed: UInt64 = 0
    public var batch = 256
    public var offset = 0
    public var quiet = false

    public init(setup: PredictorSetup, options: SamplerOptions, repaint: RePaintOptions, mask: InpaintMask, sampleShape: [Int]) {
        self.setup = setup; self.options = options; self.repaint = repaint; self.mask = mask; self.sampleShape = sampleShape
    }

    public func run(reader: FrameReader, writer: FrameWriter) throws {
        guard batch >= 1, offset >= 0 else { throw DDPMError("batch \(batch) must be >= 1 and offset \(offset) >= 0") }
        if options.correctorSteps > 0 { throw DDPMError("inpainting does not run the Langevin corrector") }
        var options = self.options
        options.keepsZeroSNRStart = setup.keepsTerminal
        let template = try options.makeSolver(schedule: setup.schedule)
        let plan = template.plan
        let moves = try repaint.levels(count: plan.stepCount).count - 1
        var meta = setup.metadata(readsInput: true)
        meta["tool"] = "denoise"; meta["inpaint"] = "repaint"; meta["seed"] = String(seed)
        meta["sampler"] = options.kind.rawValue; meta["steps"] = String(plan.stepCount); meta["spacing"] = options.spacing.rawValue
        meta["jump"] = String(repaint.jump); meta["resample"] = String(repaint.resample); meta["clip"] = String(options.clip)
        let d = sampleShape.reduce(1, *)
        var index = offset
        let frames = try setup.eachDataFrame(reader, sampleShape: sampleShape) { input, labels, frameNo in
            let progress = Progress(label: "inpaint", total: input.count * moves, quiet: quiet)
            for c in input.chunks(of: batch) {
                let known = input.samples(c)
                let m = try mask.values(for: c, of: input.count, sampleSize: d, frame: frameNo)
                let b = c.count
                var (x, noise) = Sampling.initialNoise(count: b, dimension: d, seed: seed, firstIndex: index)
                var kn = Sampling.streams(count: b, seed: seed, firstIndex: index, purpose: .inpaint)
                let y = labels.map { Array($0[c]) }
                try RePaint.run(x: &x, known: known, mask: m, y: y, predictor: setup.predictor, solver: template, options: repaint,
                                noise: &noise, inpaintNoise: &kn, progress: progress, progressBase: c.lowerBound * moves)
                var batchMeta = meta
                batchMeta["first_index"] = String(index)
                try writer.write(.samples("batch", metadata: batchMeta, x: x, sampleShape: sampleShape, y: y))
                index += b
            }
        }
        if frames == 0 { throw DDPMError("no x_0 frames on stdin to inpaint") }
    }
}
