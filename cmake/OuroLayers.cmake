# The engine's layers: one static library per layer, each linking only the layers below it.
#
# This table is the single statement of the architecture. CMake builds from it (below) and
# tools/check_layers.py checks every #include against it (ctest: layers_check), so the two cannot
# drift. A file's layer is the directory it sits in (src/<dir>/); a public header's layer is the
# one that lists it under HEADERS (include/ouro/<header>).
#
#   ouro_layer(<name> DIRS <src dirs> [HEADERS <include/ouro headers>] [USES <layers>] [EXPORTS])
#
# DIRS     the src/ directories whose sources make up the layer's library ouro_<name>.
# HEADERS  the public headers it owns (the stable API, include/ouro/).
# USES     the layers it may include and link (the closure counts: uses of a use are usable too).
# EXPORTS  its src/<dir>/ headers are visible to the layers above that use it; without EXPORTS
#          they are private to the layer, which is then reached through its public headers only.
#
# How the build enforces it: each library compiles against its own include view,
# <build>/layers/<name>/, holding links to exactly what it may include (its own src dirs, the
# exported src dirs and the public headers of the layers it uses, closure included). An #include
# of anything else does not compile. ctest `layers_wrong_way_*` proves it with one probe per layer.
ouro_layer(common      DIRS common      HEADERS error.h checked.h choice.h backend.h env_switch.h EXPORTS)
ouro_layer(model_shape DIRS model_shape HEADERS model_shape.h   USES common)
ouro_layer(config      DIRS config      HEADERS config.h config_model.h config_train.h config_dist.h config_loop.h USES model_shape)
ouro_layer(io          DIRS io          HEADERS checkpoint.h    USES model_shape      EXPORTS)
ouro_layer(tokenizer   DIRS tokenizer   HEADERS tokenizer.h     USES io)
ouro_layer(data        DIRS data        HEADERS data.h          USES tokenizer)
ouro_layer(ops         DIRS cpu runtime HEADERS ops.h host_sampling.h USES common)
ouro_layer(dist        DIRS dist        HEADERS comm.h          USES config ops       EXPORTS)
ouro_layer(device      DIRS device                              USES dist             EXPORTS)
ouro_layer(model       DIRS model       HEADERS model.h         USES model_shape ops  EXPORTS)
ouro_layer(train       DIRS train                               USES model dist data  EXPORTS)
ouro_layer(loop        DIRS loop                                USES train            EXPORTS)
ouro_layer(bench       DIRS bench                               USES train device     EXPORTS)
ouro_layer(cli         DIRS cli                                 USES bench loop)
