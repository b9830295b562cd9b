// The editing commands of denoise: `invert` (DDIM inversion, x_0 -> x_t) and `inpaint` (RePaint).
import ArgumentParser
import Foundation
import Shared

struct Invert: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "invert", abstract: "Encode x_0 frames to x_t by DDIM inversion.", discussion: Help.invert)
    @OptionGroup var predictor: PredictorArguments
    @OptionGroup var input: InputArguments
    @Option(help: "Number of DDIM steps K (default: every timestep up to --to).") var steps: Int?
    @Option(help: "Timestep spacing for --steps: leading, trailing or linspace (as denoise's).") var spacing: Spacing = .leading
    @Option(help: "The timestep to encode to (default: T - 1).") var to: Int?
    @Option(help: "Also write the trajectory (x_t and x0_pred) every K steps.") var every: Int = 0

    func validate() throws {
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
        if let to, to < 0 { throw ValidationError("--to must be >= 0, got \(to)") }
        guard every >= 0 else { throw ValidationError("--every must be >= 0") }
    }

    func run() throws {
        if isatty(0) != 0 { throw DDPMError("invert reads x_0 frames on stdin (e.g. denoise invert --model M < x0.st > xT.st)") }
        let reader = FrameReader()
        let (setup, shape) = try input.open(predictor.spec(), reader: reader)
        defer { setup.close() }
        var options = SamplerOptions()
        options.kind = .ddim; options.steps = steps; options.spacing = spacing; options.from = to
        var job = InvertJob(setup: setup, options: options, sampleShape: shape)
        job.batch = input.batch; job.every = every; job.quiet = input.quiet
        try job.run(reader: reader, writer: try FrameWriter())
        try setup.finish()
    }
}

struct Inpaint: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inpaint", abstract: "Complete the unknown pixels of x_0 frames (RePaint).", discussion: Help.inpaint)
    @OptionGroup var predictor: PredictorArguments
    @OptionGroup var sampler: SamplerArguments
    @OptionGroup var input: InputArguments
    @OptionGroup var inpaint: InpaintArguments

    func validate() throws {
        if sampler.correctorSteps > 0 { throw ValidationError("--corrector-steps does not apply to inpaint") }
    }

    func run() throws {
        if isatty(0) != 0 { throw DDPMError("inpaint reads x_0 frames on stdin (e.g. denoise inpaint --model M --mask m.png < x0.st)") }
        let reader = FrameReader()
        let (setup, shape) = try input.open(predictor.spec(answersV: sampler.variance == .learned), reader: reader)
        defer { setup.close() }
        let mask = try InpaintMask.load(path: inpaint.mask, sampleShape: shape)
        let options = sampler.options(from: nil, defaults: SampleJob.defaults(setup: setup, kind: sampler.sampler))
        var job = InpaintJob(setup: setup, options: options, repaint: inpaint.options, mask: mask, sampleShape: shape)
        job.seed = input.seed; job.batch = input.batch; job.offset = input.offset; job.quiet = input.quiet
        try job.run(reader: reader, writer: try FrameWriter())
        try setup.finish()
    }
}
