// The flags of `denoise inpaint` beyond the predictor and the sampler: the mask and RePaint's
// resampling (Lugmayr et al. 2022, sec. 4.2).
import ArgumentParser

public struct InpaintArguments: ParsableArguments {
    @Option(help: "Mask of known pixels: a PNG (white = known) or a frame file with 'mask' (else 'x'), values in [0, 1], shape of one sample, [1,H,W] or one per sample.")
    public var mask: String
    @Option(help: "RePaint jump length j: levels gone back up per resampling jump.") public var jump: Int = 10
    @Option(help: "RePaint resample count r: passes over each jump point (1: plain replacement, no jumps).") public var resample: Int = 10

    public init() {}

    public func validate() throws {
        guard jump >= 1 else { throw ValidationError("--jump must be at least 1, got \(jump)") }
        guard (1...RePaintOptions.maxResample).contains(resample) else {
            throw ValidationError("--resample must lie in 1 ... \(RePaintOptions.maxResample), got \(resample)")
        }
    }

    public var options: RePaintOptions {
        var o = RePaintOptions()
        o.jump = jump; o.resample = resample
        return o
    }
}
