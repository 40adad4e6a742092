// Prompt markup, JSON, templates and k-shot prompts, as token ids.
#include "metalm/data/prompt.h"

#include <algorithm>

#include "metalm/core/error.h"
#include "metalm/data/tokenizer.h"

namespace metalm::data {

Prompt& Prompt::plain(std::vector<int64_t> ids) {
  if (ids.empty()) return *this;
  if (!segments.empty() && segments.back().encoder.empty()) {  // one plain run stays one segment
    auto& last = segments.back().ids;
    last.insert(last.end(), ids.begin(), ids.end());
  } else {
    segments.push_back({std::move(ids), ""});
  }
  return *this;
}

Prompt& Prompt::docked(std::vector<int64_t> ids, std::string encoder) {
  MLM_CHECK(!encoder.empty(), ValueError, "[prompt] a docked segment needs an encoder name");
  if (!ids.empty()) segments.push_back({std::move(ids), std::move(encoder)});
  return *this;
}

Prompt& Prompt::append(const Prompt& other) {
  for (const Segment& s : other.segments) {
    if (s.encoder.empty()) plain(s.ids);
    else docked(s.ids, s.encoder);
  }
  return *this;
}

int64_t Prompt::size() const {
  int64_t n = 0;
  for (const Segment& s : segments) n += static_cast<int64_t>(s.ids.size());
  return n;
}

std::vector<int64_t> Prompt::ids() const {
  std::vector<int64_t> out;
  for (const Segment& s : segments) out.insert(out.end(), s.ids.begin(), s.ids.end());
  return out;
}

bool Prompt::has_docked() const {
  return std::any_of(segments.begin(), segments.end(),
                     [](const Segment& s) { return !s.encoder.empty(); });
}

std::vector<int64_t> encode_lines(const data::Tokenizer& tok, std::string_view text) {
  std::vector<int64_t> ids;
  const int64_t line_end = tok.spec().line_end_id;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t nl = text.find('\n', begin);
    const std::string_view line =
        text.substr(begin, nl == std::string_view::npos ? std::string_view::npos : nl - begin);
    for (const int32_t id : tok.encode(line)) ids.push_back(id);
    if (nl == std::string_view::npos) break;
    if (line_end >= 0) ids.push_back(line_end);
    begin = nl + 1;
  }
  return ids;
}

std::string decode_lines(const Tokenizer& tok, const std::vector<int64_t>& ids) {
  std::string text;
  std::vector<int32_t> run;
  for (const int64_t id : ids) {
    if (id != tok.spec().line_end_id) {
      run.push_back(static_cast<int32_t>(id));
      continue;
    }
    text += tok.decode(run) + "\n";
    run.clear();
  }
  return text + tok.decode(run);
}

std::vector<int64_t> non_text_ids(const Tokenizer& tok) {
  const TokenizerSpec& s = tok.spec();
  std::vector<int64_t> ids;
  for (const int64_t id : {s.bos_id, s.pad_id, s.unk_id, s.mask_id, s.image_id, s.image_end_id})
    if (id >= 0) ids.push_back(id);
  return ids;
}

Prompt parse_prompt(const data::Tokenizer& tok, std::string_view markup,
                    const std::string& encoder, bool bos) {
  Prompt p;
  if (bos) p.plain({tok.bos_id()});
  std::string text;  // the current run, braces unescaped
  bool inside = false;
  size_t opened = 0;
  auto flush = [&] {
    if (inside) {
      MLM_CHECK(!encoder.empty(), ValueError, "[prompt] \"{{\" at offset ", opened,
                " docks text through an encoder, and this model has none");
      MLM_CHECK(!text.empty(), ValueError, "[prompt] the docked segment at offset ", opened,
                " is empty");
      p.docked(encode_lines(tok, text), encoder);
    } else if (!text.empty()) {
      p.plain(encode_lines(tok, text));
    }
    text.clear();
  };
  for (size_t i = 0; i < markup.size(); ++i) {
    if (markup.compare(i, 3, "\\{{") == 0) {
      text.append(2, '{');
      i += 2;
    } else if (markup.compare(i, 2, "{{") == 0) {
      MLM_CHECK(!inside, ValueError, "[prompt] \"{{\" at offset ", i, " inside the docked "
                "segment opened at offset ", opened, " (docked segments do not nest)");
      flush();
      inside = true;
      opened = i++;
    } else if (inside && markup.compare(i, 2, "}}") == 0) {
      flush();
      inside = false;
      ++i;
    } else {
      text += markup[i];
    }
  }
  MLM_CHECK(!inside, ValueError, "[prompt] the docked segment opened at offset ", opened,
            " has no closing \"}}\"");
  flush();
  return p;
}

Prompt parse_prompt_json(const data::Tokenizer& tok, const io::Json& value,
                         const std::string& encoder, const io::JsonWhere& where, bool bos) {
  if (value.is_string()) return parse_prompt(tok, value.get<std::string>(), encoder, bos);
  if (!value.is_array())
    where.fail("", "a prompt is a string (markup) or an array of segments, got " +
                       io::describe(value));
  Prompt p;
  if (bos) p.plain({tok.bos_id()});
  for (size_t i = 0; i < value.size(); ++i) {
    const io::Json& seg = value[i];
    const io::JsonWhere at = where.nested(detail::cat("[", i, "]"));
    io::require_object(seg, "", at);
    for (const auto& [key, v] : seg.items())
      if (key != "text" && key != "dock")
        at.fail(key, "unknown field (a segment has \"text\" and optionally \"dock\")");
    if (!seg.contains("text")) at.fail("text", "missing (every segment has its text)");
    const std::string text = io::read_string(seg["text"], "text", at);
    std::string enc;
    if (seg.contains("dock")) {
      const io::Json& d = seg["dock"];
      if (d.is_boolean()) {
        enc = d.get<bool>() ? encoder : "";
        if (d.get<bool>() && encoder.empty()) at.fail("dock", "this model has no encoder");
      } else if (d.is_string()) {
        enc = d.get<std::string>();
      } else {
        at.fail("dock", "expected true, false or an encoder name, got " + io::describe(d));
      }
    }
    if (enc.empty()) {
      p.plain(encode_lines(tok, text));
    } else {
      if (text.empty()) at.fail("text", "a docked segment must not be empty");
      p.docked(encode_lines(tok, text), enc);
    }
  }
  return p;
}

Prompt render_template(const data::Tokenizer& tok, const PromptTemplate& tmpl,
                       std::string_view input, const std::string& encoder) {
  const size_t at = tmpl.text.find("{input}");
  MLM_CHECK(at != std::string::npos && tmpl.text.find("{input}", at + 1) == std::string::npos,
            ValueError, "[prompt] the template ", io::quote(tmpl.text),
            " must hold \"{input}\" exactly once");
  Prompt p;
  p.plain(encode_lines(tok, std::string_view(tmpl.text).substr(0, at)));
  MLM_CHECK(!input.empty(), ValueError, "[prompt] an example's input is empty");
  std::vector<int64_t> ids = encode_lines(tok, input);
  if (tmpl.max_input_tokens > 0 && static_cast<int64_t>(ids.size()) > tmpl.max_input_tokens)
    ids.resize(static_cast<size_t>(tmpl.max_input_tokens));
  if (tmpl.dock_input && !encoder.empty()) p.docked(std::move(ids), encoder);
  else p.plain(std::move(ids));
  p.plain(encode_lines(tok, std::string_view(tmpl.text).substr(at + 7)));
  return p;
}

Prompt few_shot_prompt(const data::Tokenizer& tok, const PromptTemplate& tmpl,
                       const std::vector<std::pair<std::string, std::string>>& demonstrations,
                       std::string_view query, const std::string& encoder) {
  Prompt p;
  p.plain({tok.bos_id()});
  for (const auto& [input, output] : demonstrations) {
    p.append(render_template(tok, tmpl, input, encoder));
    p.plain(encode_lines(tok, output));
    p.plain({tok.eos_id()});
  }
  return p.append(render_template(tok, tmpl, query, encoder));
}

}  // namespace metalm::data
