// schedule: writes the variance schedule as a frame, or as a TSV table.
import ArgumentParser
import Shared

@main
struct ScheduleTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Write a DDPM variance schedule (beta_t and everything derived from it).",
        discussion: """
        Writes one frame of kind 'schedule' holding F64 [T] tensors beta, alpha, alpha_bar, \
        alpha_bar_prev, sqrt_alpha_bar, sqrt_one_minus_alpha_bar, posterior_variance, \
        posterior_log_variance_clipped, posterior_mean_coef1, posterior_mean_coef2, snr \
        (docs/FORMAT.md). Timesteps are 0-based: t = 0 .. T-1, T-1 the noisiest.

        Examples:
          schedule --cosine > cosine.st
          schedule --cosine --text | head
          schedule -T 500 --beta-start 1e-4 --beta-end 0.04 --zero-terminal-snr > s.st
        """,
        version: toolkitVersion)

    enum Kind: String, EnumerableFlag {
        case linear, cosine, scaledLinear, sigmoid, quadratic
        static func help(for value: Kind) -> ArgumentHelp? {
            switch value {
            case .linear: return "beta linear from --beta-start to --beta-end (default; Ho et al. 2020: 1e-4 .. 0.02)."
            case .cosine: return "abar = cos^2(((t/T)+s)/(1+s) pi/2), s = 0.008, betas clipped at 0.999 (Nichol & Dhariwal 2021)."
            case .scaledLinear: return "sqrt(beta) linear (latent diffusion; default 0.00085 .. 0.012)."
            case .sigmoid: return "beta = start + (end - start) sigmoid(linspace(-6, 6, T))."
            case .quadratic: return "sqrt(beta) linear from sqrt(start) to sqrt(end) (Ho et al.'s 'quad'; default 1e-4 .. 0.02)."
            }
        }
    }

    @Flag(exclusivity: .exclusive) var kind: Kind = .linear
    @Option(name: [.customShort("T"), .long], help: "Number of diffusion steps T.") var steps: Int = 1000
    @Option(help: "First beta (default per schedule).") var betaStart: Double?
    @Option(help: "Last beta (default per schedule).") var betaEnd: Double?
    @Flag(help: "Rescale so alpha_bar at t = T-1 is exactly 0 (Lin et al. 2024, Algorithm 1).") var zeroTerminalSnr = false
    @Flag(help: "Print a TSV table (header row: t, beta, alpha, alpha_bar, ..., snr) instead of a frame.") var text = false

    func validate() throws {
        if kind == .cosine && (betaStart != nil || betaEnd != nil) {
            throw ValidationError("--beta-start/--beta-end do not apply to --cosine")
        }
    }

    func run() throws {
        let mapped: ScheduleKind
        switch kind {
        case .linear: mapped = .linear
        case .cosine: mapped = .cosine
        case .scaledLinear: mapped = .scaledLinear
        case .sigmoid: mapped = .sigmoid
        case .quadratic: mapped = .quadratic
        }
        let s = try Schedule.make(mapped, T: steps, betaStart: betaStart, betaEnd: betaEnd, zeroTerminalSNR: zeroTerminalSnr)
        if text {
            try TextOutput().write(s.table())
        } else {
            try FrameWriter().write(s.frame())
        }
    }

    static func main() { runTool() }
}
