// Strings from files on their way to a terminal: tensor names, metadata keys and values, JSON
// keys quoted in errors. A control character (an escape sequence, a newline, a carriage return)
// copied raw could recolour the terminal, retitle it or forge whole lines of output; written as
// an escape it is only text. Every string a file supplies passes through `escapedForTerminal`
// before it is printed, and every DDPMError message does (DDPMError.init), so a one-line error
// stays one line whatever it quotes.

extension Unicode.Scalar {
    /// Control characters (C0, DEL, C1), the Unicode line and paragraph separators, and the
    /// bidirectional embedding, override and isolate controls (which reorder what follows them).
    var needsTerminalEscape: Bool {
        switch value {
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x2028, 0x2029: return true
        case 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }
}

extension String {
    /// The string with every control character written as an escape: \n, \r, \t, else \u{1b}
    /// (hex). Other characters, backslashes included, are kept, so escaping twice changes nothing.
    public var escapedForTerminal: String {
        guard unicodeScalars.contains(where: \.needsTerminalEscape) else { return self }
        var out = String.UnicodeScalarView()
        for u in unicodeScalars {
            guard u.needsTerminalEscape else { out.append(u); continue }
            let text: String
            switch u {
            case "\n": text = "\\n"
            case "\r": text = "\\r"
            case "\t": text = "\\t"
            default: text = "\\u{" + String(u.value, radix: 16) + "}"
            }
            out.append(contentsOf: text.unicodeScalars)
        }
        return String(out)
    }

    /// `escapedForTerminal`, cut to at most `limit` characters (then ending in "...").
    public func escapedForTerminal(limit: Int) -> String {
        let e = escapedForTerminal
        guard e.utf8.count > limit, e.count > limit else { return e }
        return String(e.prefix(max(limit - 3, 0))) + "..."
    }
}

extension Sequence where Element == String {
    /// Names for a message: at most `limit` of them, comma-separated, then "and N more".
    public func listedForMessage(limit: Int = 8) -> String {
        let all = Array(self)
        if all.isEmpty { return "none" }
        let shown = all.prefix(limit).joined(separator: ", ")
        return all.count > limit ? shown + " and \(all.count - limit) more" : shown
    }
}
