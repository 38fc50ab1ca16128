// Just enough Unicode for tokenizers: UTF-8 <-> code points and the classes \p{L}, \p{N}, \s.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loupe::text {

bool is_letter(char32_t c);
bool is_number(char32_t c);
bool is_space(char32_t c);
// Decodes UTF-8; invalid bytes become U+FFFD (one per byte), as lenient decoders do.
std::u32string utf8_to_u32(const std::string& s);
std::string u32_to_utf8(const std::u32string& s);
void append_utf8(std::string& out, char32_t c);

}  // namespace loupe::text
