// Parsing the sample shape flag of the sampling tools: `--shape D` or `--shape C,H,W`.
import Foundation

/// Parses "D" or "C,H,W" (positive integers) into a shape.
public func parseSampleShape(_ text: String) throws -> [Int] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard parts.count == 1 || parts.count == 3, parts.allSatisfy({ $0 != nil && $0! > 0 }) else {
        throw DDPMError("--shape '\(text)': expected D or C,H,W with positive integers (e.g. --shape 2 or --shape 1,28,28)")
    }
    let shape = parts.map { $0! }
    guard shape.reduce(1, *) <= 1 << 28 else { throw DDPMError("--shape '\(text)' is too large") }
    return shape
}
