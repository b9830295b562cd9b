// guide: classifier-free guidance as a stream filter, or an analytic predictor
// process for `denoise --predictor`. The formulas are in Shared/Diffusion/Guidance.swift.
import ArgumentParser
import Shared

@main
struct GuideTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guide",
        abstract: "Mix conditional and unconditional eps (classifier-free guidance), or serve an analytic predictor.",
        discussion: """
        Filter mode (--scale W): reads frames with 'eps_cond' and 'eps_uncond' (F32, same shape [N,...]) and writes \
        them with 'eps' = eps_uncond + W (eps_cond - eps_uncond) instead (other tensors and schedule frames pass \
        through). W = 1: conditional, W = 0: unconditional; Ho & Salimans' w is W - 1. --rescale PHI applies Lin et \
        al.'s guidance rescale per sample.

        Predictor mode (--analytic SPEC): reads request frames with 'x', 't' (and 'y') and answers each with a frame \
        holding the exact 'eps' (and 'v' when the spec has v=) of a Gaussian or Gaussian mixture; with --scale, the \
        answer is the guided eps of label y against the unconditional one; with --pair, 'eps_cond' and 'eps_uncond'.

        Examples:
          model-answering-pairs | guide --scale 3 --rescale 0.7
          denoise --predictor 'guide --analytic "gaussian mu=0.5 sigma=0.3"' --shape 2 -n 100 > s.st
          denoise --predictor 'guide --analytic "mixture mu=-1,1 sigma=0.2" --scale 2' --label 1 --shape 2 > s.st
        """,
        version: toolkitVersion)

    @Option(help: "Guidance scale W (weight on the conditional eps).") var scale: Double?
    @Option(help: "Guidance rescale phi in [0, 1] (Lin et al. 2024, eq. 15-16).") var rescale: Double = 0
    @Option(help: "Serve an analytic predictor: 'gaussian mu=M sigma=S [v=V] [null=M,S]' or 'mixture mu=M1,M2 sigma=S1,S2 [weight=W1,W2] [v=V] [null=M,S]'.")
    var analytic: String?
    @Flag(help: "With --analytic: answer 'eps_cond' and 'eps_uncond' instead of 'eps'.") var pair = false
    @Option(help: "Schedule file for --analytic (default linear T = 1000).") var schedule: String?

    func run() throws {
        guard rescale >= 0 && rescale <= 1 else { throw DDPMError("--rescale must lie in [0, 1], got \(rescale)") }
        if rescale != 0 && scale == nil { throw DDPMError("--rescale needs --scale") }
        if let scale, !scale.isFinite { throw DDPMError("--scale must be finite") }
        let reader = FrameReader()
        let writer = try FrameWriter()
        var frameNo = 0
        if let analytic {
            if pair && scale != nil { throw DDPMError("--pair and --scale exclude each other") }
            let sched = try schedule.map(Schedule.load) ?? Schedule.standard()
            let p = try GaussianMixturePredictor.parse(analytic, schedule: sched, sampleShape: [])
            while let f = try reader.next() {
                frameNo += 1
                let x = try f.require("x")
                guard x.shape.count >= 2, x.shape[0] > 0 else { throw DDPMError("frame \(frameNo): 'x' must be [N,...] with N > 0, got \(x.shape)") }
                let n = x.shape[0]
                let t = try f.require("t").integers().map { Int($0) }
                guard t.count == n else { throw DDPMError("frame \(frameNo): 't' has \(t.count) values for \(n) samples") }
                let y = try f["y"].map { try $0.integers().map { Int($0) } }
                if let y, y.count != n { throw DDPMError("frame \(frameNo): 'y' has \(y.count) values for \(n) samples") }
                var out = Frame(metadata: ["kind": "eps", "predictor": p.describe])
                let xs = x.floats
                if pair || scale != nil {
                    guard let y else { throw DDPMError("frame \(frameNo): guidance needs labels 'y'") }
                    let c = try p.predict(x: xs, t: t, y: y), u = try p.predict(x: xs, t: t, y: nil)
                    if pair {
                        out["eps_cond"] = Tensor(c.eps, shape: x.shape)
                        out["eps_uncond"] = Tensor(u.eps, shape: x.shape)
                    } else {
                        out["eps"] = Tensor(Guidance.mix(cond: c.eps, uncond: u.eps, scale: scale!, rescale: rescale, sampleSize: xs.count / n), shape: x.shape)
                    }
                    if let v = c.v { out["v"] = Tensor(v, shape: x.shape) }
                } else {
                    let a = try p.predict(x: xs, t: t, y: y)
                    out["eps"] = Tensor(a.eps, shape: x.shape)
                    if let v = a.v { out["v"] = Tensor(v, shape: x.shape) }
                }
                try writer.write(out)
            }
            return
        }
        guard let scale else { throw DDPMError("give --scale W (filter mode) or --analytic SPEC (predictor mode)") }
        if pair { throw DDPMError("--pair applies to --analytic") }
        while var f = try reader.next() {
            frameNo += 1
            if f.kind == "schedule" { try writer.write(f); continue }
            let c = try f.require("eps_cond"), u = try f.require("eps_uncond")
            guard c.shape == u.shape, c.shape.count >= 2, c.shape[0] > 0 else {
                throw DDPMError("frame \(frameNo): 'eps_cond' \(c.shape) and 'eps_uncond' \(u.shape) must have the same shape [N,...]")
            }
            let cf = c.floats
            let eps = Guidance.mix(cond: cf, uncond: u.floats, scale: scale, rescale: rescale, sampleSize: cf.count / c.shape[0])
            f["eps_cond"] = nil
            f["eps_uncond"] = nil
            f["eps"] = Tensor(eps, shape: c.shape)
            f.metadata["guidance"] = "\(scale)"
            if rescale != 0 { f.metadata["guidance_rescale"] = "\(rescale)" }
            try writer.write(f)
        }
    }

    static func main() { runTool() }
}
