// The metalm command line: one binary, one subcommand per job (DESIGN.md section 7), each in
// its own file (cmd_*.cpp). Errors from the library arrive as metalm::Error and leave as one
// line on stderr, exit code 1.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "apps/common.h"
#include "metalm/core/error.h"
#include "metalm/core/threads.h"

int main(int argc, char** argv) {
  using namespace metalm::apps;
  CLI::App app{"metalm: MetaLM, KOSMOS-1 and BEiT-3 in C++ (no Python at run time)", "metalm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "metalm 0.1.0");
  const std::vector<Command> commands = {add_init_command(app), add_forward_command(app),
                                         add_info_command(app), add_toy_lm_command(app),
                                         add_plot_command(app),
                                         add_tokenizer_command(app), add_pretrain_command(app),
                                         add_generate_command(app), add_eval_command(app),
                                         add_chat_command(app), add_finetune_command(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::Success& e) {  // --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {  // one line, as every other error (D8)
    std::fprintf(stderr, "metalm: error: %s (see --help)\n", e.what());
    return e.get_exit_code() == 0 ? 2 : e.get_exit_code();
  }
  try {
    metalm::init_threads_from_env();
    for (const Command& c : commands) {
      if (!c.app->parsed()) continue;
      if (c.common->threads >= 0) metalm::set_num_threads(c.common->threads);
      return c.run();
    }
  } catch (const metalm::Error& e) {
    std::fprintf(stderr, "metalm: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metalm: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
