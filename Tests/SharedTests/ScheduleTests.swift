import XCTest
import Foundation
@testable import Shared

final class ScheduleTests: XCTestCase {
    func testLinearDefaultsMatchHoEtAl() throws {
        let s = Schedule.standard()
        XCTAssertEqual(s.T, 1000)
        XCTAssertEqual(s.beta[0], 1e-4, accuracy: 1e-18)
        XCTAssertEqual(s.beta[999], 0.02, accuracy: 1e-17)
    }

    /// alpha_bar is the running product of 1 - beta, and the posterior quantities follow Ho et al. eq. 7.
    func testIdentitiesForEveryKind() throws {
        for kind in ScheduleKind.allCases where kind != .custom {
            for zt in [false, true] {
                let s = try Schedule.make(kind, T: 257, zeroTerminalSNR: zt)
                var p = 1.0
                for t in 0..<s.T {
                    p *= 1 - s.beta[t]
                    XCTAssertEqual(s.alphaBar[t], zt && t == s.T - 1 ? 0 : p, accuracy: 1e-14 * max(p, 1e-300) + 1e-300)
                    XCTAssertEqual(s.alphaBarPrev[t], t == 0 ? 1 : s.alphaBar[t - 1])
                    let pv = s.beta[t] * (1 - s.alphaBarPrev[t]) / (1 - s.alphaBar[t])
                    XCTAssertEqual(s.posteriorVariance[t], pv, accuracy: 1e-15 * pv + 1e-300)
                    XCTAssertEqual(s.snr[t], s.alphaBar[t] / (1 - s.alphaBar[t]), accuracy: 1e-12 * s.snr[t])
                }
                XCTAssertEqual(s.posteriorVariance[0], 0)
            }
        }
    }

    /// Cosine against its closed form abar_t = f(t+1)/f(0) (no beta reached the 0.999 clip for t < T-1).
    func testCosineClosedForm() throws {
        let T = 1000, sOff = 0.008
        let s = try Schedule.make(.cosine, T: T)
        func f(_ u: Double) -> Double { let c = cos((u + sOff) / (1 + sOff) * Double.pi / 2); return c * c }
        for t in stride(from: 0, to: T - 1, by: 37) {
            XCTAssertEqual(s.alphaBar[t], f(Double(t + 1) / Double(T)) / f(0), accuracy: 1e-12)
        }
        XCTAssertEqual(s.beta[T - 1], 0.999)
    }

    func testZeroTerminalSNRKeepsFirstAndZerosLast() throws {
        for kind in [ScheduleKind.linear, .cosine, .scaledLinear] {
            let plain = try Schedule.make(kind, T: 1000)
            let z = try Schedule.make(kind, T: 1000, zeroTerminalSNR: true)
            XCTAssertEqual(z.alphaBar[999], 0)
            XCTAssertEqual(z.alphaBar[0], plain.alphaBar[0], accuracy: 1e-15)
            XCTAssertEqual(z.beta[999], 1)
        }
    }

    func testInvalidParametersAreRejected() {
        XCTAssertThrowsError(try Schedule.make(.linear, T: 0))
        XCTAssertThrowsError(try Schedule.make(.linear, betaStart: 0.5, betaEnd: 0.1))
        XCTAssertThrowsError(try Schedule.make(.linear, betaStart: 0, betaEnd: 0.1))
        XCTAssertThrowsError(try Schedule.make(.linear, betaStart: 0.1, betaEnd: 1.5))
        XCTAssertThrowsError(try Schedule(betas: [0.1, 1.0, 0.2]))
    }

    func testFrameRoundTripThroughTheTool() throws {
        let r = try runTool("schedule", ["--cosine", "-T", "50"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let frames = try decode(r.stdout)
        XCTAssertEqual(frames.count, 1)
        let s = try Schedule(frame: frames[0])
        let ref = try Schedule.make(.cosine, T: 50)
        XCTAssertEqual(s.alphaBar, ref.alphaBar)
        XCTAssertEqual(frames[0].metadata["schedule"], "cosine")
    }

    func testBadArgumentsGiveOneLineError() throws {
        let r = try runTool("schedule", ["-T", "0"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }
}
