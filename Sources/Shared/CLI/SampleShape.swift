// The sample shape of the sampling tools: `--shape D` or `--shape C,H,W`.
import ArgumentParser
import Foundation

/// One sample's shape, D or C,H,W with positive sizes and at most 2^28 values.
public struct SampleShape: ExpressibleByArgument, Sendable {
    public let dims: [Int]
    public init?(argument text: String) {
        guard let d = try? parseSampleShape(text) else { return nil }
        dims = d
    }
    public static var defaultCompletionKind: CompletionKind { .default }
}

/// Parses "D" or "C,H,W" (positive integers) into a shape.
public func parseSampleShape(_ text: String) throws -> [Int] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard parts.count == 1 || parts.count == 3, parts.allSatisfy({ $0 != nil && $0! > 0 && $0! <= 1 << 28 }) else {
        throw DDPMError("sample shape '\(text)': expected D or C,H,W with positive integers (e.g. 2 or 1,28,28)")
    }
    let shape = parts.map { $0! }
    guard shape.reduce(1, *) <= 1 << 28 else { throw DDPMError("sample shape '\(text)' holds more than 2^28 values") }
    return shape
}
