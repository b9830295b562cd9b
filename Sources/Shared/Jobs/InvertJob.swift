// `denoise invert`: DDIM inversion of x_0 frames (Diffusion/Sampling/Inversion.swift). Output:
// frames of kind 'batch' holding x (the encoding at the plan's start timestep), t (that timestep
// per sample) and y when labelled, ready for `denoise --from T --sampler ddim` with the same
// --steps and --spacing, which decodes them back to x_0; trajectory frames before each batch when
// asked. Deterministic: no seed is used.

public struct InvertJob {
    public let setup: PredictorSetup
    /// The plan's choices (steps, spacing, from = the timestep to encode to); the kind is DDIM.
    public let options: SamplerOptions
    public let sampleShape: [Int]
    public var batch = 256
    public var every = 0
    public var quiet = false

    public init(setup: PredictorSetup, options: SamplerOptions, sampleShape: [Int]) {
        self.setup = setup; self.options = options; self.sampleShape = sampleShape
    }

    public func run(reader: FrameReader, writer: FrameWriter) throws {
        guard batch >= 1, every >= 0 else { throw DDPMError("batch \(batch) must be >= 1 and trajectory period \(every) >= 0") }
        let plan = try SamplingPlan(schedule: setup.schedule, from: options.from, steps: options.steps, spacing: options.spacing)
        if let from = options.from, plan.startTimestep != from {
            warn("denoise", "spacing \(options.spacing.rawValue) with \(plan.stepCount) steps ends at t = \(plan.startTimestep), not at \(from)")
        }
        var meta = setup.metadata(readsInput: true)
        meta["tool"] = "denoise"; meta["inverted"] = "ddim"
        meta["steps"] = String(plan.stepCount); meta["spacing"] = options.spacing.rawValue
        meta["start_t"] = String(plan.startTimestep)
        let d = sampleShape.reduce(1, *)
        let frames = try setup.eachDataFrame(reader, sampleShape: sampleShape) { input, labels, _ in
            let progress = Progress(label: "invert", total: input.count * plan.stepCount, quiet: quiet)
            for c in input.chunks(of: batch) {
                var x = input.samples(c)
                let b = x.count / d
                let y = labels.map { Array($0[c]) }
                var trajectory: Trajectory? = every > 0 ? Trajectory(every: every) : nil
                try DDIMInversion.run(x: &x, count: b, y: y, predictor: setup.predictor, plan: plan, trajectory: &trajectory,
                                      progress: progress, progressBase: c.lowerBound * plan.stepCount)
                for k in trajectory?.frames ?? [] {
                    var m = meta
                    m["t"] = String(k.t); m["step"] = String(k.step)
                    try writer.write(.samples("trajectory", metadata: m, x: k.x, sampleShape: sampleShape, x0: k.x0, y: nil))
                }
                try writer.write(.samples("batch", metadata: meta, x: x, sampleShape: sampleShape, t: plan.startTimestep, y: y))
            }
        }
        if frames == 0 { throw DDPMError("no x_0 frames on stdin to invert") }
    }
}
