import XCTest
import Shared

final class NNUNetTests: XCTestCase {
    func count(_ net: Network) -> Int { net.parameters.reduce(0) { $0 + $1.count } }

    func testBenchUNet28ParameterCounts() throws {
        let net = NetworkFactory.benchUNet28()
        XCTAssertEqual(count(net), 1_623_169)
        XCTAssertEqual(count(NetworkFactory.benchUNet28(classes: 10)), 1_624_577)
        XCTAssertEqual(Set(net.parameters.map(\.name)).count, net.parameters.count)
        // per-module figures from the peer's table
        func sum(_ prefix: String) -> Int { net.parameters.filter { $0.name.hasPrefix(prefix + ".") }.reduce(0) { $0 + $1.count } }
        XCTAssertEqual(sum("time_embedding"), 20_736)
        XCTAssertEqual(sum("down_blocks.1.resnets.0"), 65_984)
        XCTAssertEqual(sum("down_blocks.2.attentions.0"), 16_768)
        XCTAssertEqual(sum("up_blocks.1.resnets.2"), 107_072)
        XCTAssertEqual(sum("up_blocks.2.resnets.0"), 44_416)
        XCTAssertEqual(sum("up_blocks.0.upsamplers.0"), 36_928)
        // 17 res blocks, 6 attention layers
        XCTAssertEqual(net.parameters.filter { $0.name.hasSuffix("conv1.weight") }.count, 17)
        XCTAssertEqual(net.parameters.filter { $0.name.hasSuffix("to_q.weight") }.count, 6)
        // rebuilt from its architecture, bit for bit
        let again = try NetworkFactory.make(architecture: net.architecture)
        XCTAssertEqual(again.parameters.map(\.name), net.parameters.map(\.name))
        XCTAssertEqual(again.parameters.map { Array($0.value) }, net.parameters.map { Array($0.value) })
        XCTAssertThrowsError(try NetworkFactory.make(architecture: ["arch": "unet", "in_shape": "1,28,28", "mults": "1,2,2,2"]))
        XCTAssertThrowsError(try NetworkFactory.make(architecture: ["arch": "unet", "in_shape": "1,28,28", "groups": "7"]))
        XCTAssertThrowsError(try NetworkFactory.make(architecture: ["arch": "unet", "in_shape": "1,28"]))
    }

    func smallUNet(dropout: String = "0.1") throws -> UNet {
        try NetworkFactory.make(architecture: [
            "arch": "unet", "in_shape": "1,8,8", "channels": "8", "mults": "1,2", "res_blocks": "1",
            "attn": "4", "heads": "2", "groups": "2", "dropout": dropout, "classes": "3",
            "learn_sigma": "true", "seed": "5"]) as! UNet
    }

    func testSmallUNetGradients() throws {
        let net = try smallUNet()
        net.step = 7
        randomizeParameters(net.parameters, seed: 21, scale: 0.3)
        let n = 2
        XCTAssertEqual(net.outputShape, [2, 8, 8])
        let t = [3, 900], y = [1, 3]
        // Fewer coordinates per tensor: the net has ~100 tensors and each checked
        // coordinate costs two forwards. The loss sums 256 outputs of a deep float32
        // net (rounding ~1e-6 each, ~2e-5 in the sum, ~1e-3 after dividing by 2h), so
        // abs = 2e-3; tensors deep behind near-uniform attention have gradients of
        // only ~1e-3, so the visibility floor is 1e-4. The per-layer tests check
        // each layer tightly; this one checks the wiring (skips, concat order,
        // shared time embedding), where a mistake gives errors of order max |an|.
        gradCheck("small UNet", input: testNormals(n * 64, seed: 22), params: net.parameters,
                  forward: { net.forward($0, t: t, y: y, training: true) },
                  backward: { net.backward($0) }, coords: 6, abs: 2e-3, minGradient: 1e-4)
    }

    func testTrainingStepBitReproducible() throws {
        // Two networks from the same architecture, same batch, dropout on: identical
        // outputs, input gradients and parameter gradients, bit for bit (fixed chunking).
        func run() throws -> ([Float], [Float], [[Float]]) {
            let net = try smallUNet(dropout: "0.2")
            randomizeParameters(net.parameters, seed: 4, scale: 0.3)
            net.step = 3
            let x = testNormals(6 * 64, seed: 5)
            let out = net.forward(x, t: [0, 5, 10, 500, 998, 999], y: [0, 1, 2, 3, 3, 1], training: true)
            let dx = net.backward(testNormals(out.count, seed: 6))
            return (out, dx, net.parameters.map { Array($0.grad) })
        }
        let (o1, d1, g1) = try run(), (o2, d2, g2) = try run()
        XCTAssertEqual(o1, o2)
        XCTAssertEqual(d1, d2)
        XCTAssertEqual(g1, g2)
        XCTAssert(g1.contains { $0.contains { $0 != 0 } })
    }

    func testUNetDeterministicAndBatchIndependent() throws {
        let net = try smallUNet(dropout: "0")
        randomizeParameters(net.parameters, seed: 2, scale: 0.3)
        let x = testNormals(5 * 64, seed: 3)
        let t = [1, 2, 3, 4, 5], y = [0, 1, 2, 3, 0]
        let a = net.forward(x, t: t, y: y, training: false)
        let b = net.forward(x, t: t, y: y, training: false)
        XCTAssertEqual(a, b)   // bit-identical run to run
        let one = net.forward(Array(x[64..<128]), t: [2], y: [1], training: false)
        for i in 0..<128 { XCTAssertEqual(a[128 + i], one[i], accuracy: 1e-5 * max(1, abs(one[i]))) }
    }
}
