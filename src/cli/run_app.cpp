#include "cli/commands.h"
#include "common/log.h"
#include "ouro/error.h"

namespace ouro::cli {

int run_app(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ExitStatus& e) {
    return e.code;
  } catch (const Error& e) {
    logger()->error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    logger()->error("unexpected failure: {}", e.what());
    return 1;
  }
  return 0;
}

}  // namespace ouro::cli
