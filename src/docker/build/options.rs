//! A build's request and the builder's settings as bollard's build options.

use std::collections::HashMap;

use bollard::query_parameters::{BuildImageOptions, BuildImageOptionsBuilder, BuilderVersion};

use crate::docker::spec::{BuildSpec, INLINE_CACHE_ARG};
use crate::docker::Builder;

/// Which builder a build runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Engine {
    Buildkit,
    Legacy,
}

impl Builder {
    /// The request's options, the builder's network and limits, and the
    /// `engine`, as bollard's options for building `dockerfile`.
    pub(super) fn build_options(
        &self,
        spec: &BuildSpec<'_>,
        dockerfile: &str,
        engine: Engine,
    ) -> BuildImageOptions {
        let options = spec.options;
        let mut builder = BuildImageOptionsBuilder::default()
            .dockerfile(dockerfile)
            .t(spec.reference)
            .rm(true)
            // Intermediate containers of a failed step are removed too: nothing left behind.
            .forcerm(true)
            .nocache(options.no_cache);
        if options.pull {
            builder = builder.pull("1");
        }
        let mut build_args = to_hash_map(&options.build_args);
        if spec.inline_cache && engine == Engine::Buildkit {
            build_args.insert(INLINE_CACHE_ARG.into(), "1".into());
        }
        if !build_args.is_empty() {
            builder = builder.buildargs(&build_args);
        }
        if !spec.cache_from.is_empty() {
            builder = builder.cachefrom(&spec.cache_from.to_vec());
        }
        if !options.labels.is_empty() {
            builder = builder.labels(&to_hash_map(&options.labels));
        }
        if let Some(target) = &options.target {
            builder = builder.target(target);
        }
        if let Some(platform) = &options.platform {
            builder = builder.platform(platform);
        }
        if let Some(network) = options
            .network
            .as_ref()
            .or(self.config.build_network.as_ref())
        {
            builder = builder.networkmode(network);
        }
        match engine {
            Engine::Buildkit => builder
                .version(BuilderVersion::BuilderBuildKit)
                // bollard serves the pull logins on this session.
                .session(&uuid::Uuid::new_v4().to_string()),
            Engine::Legacy => {
                // BuildKit on the daemon's HTTP API takes no step limits: legacy only
                // (the start warns when they are set with BuildKit on).
                if let Some(memory) = self.config.build_memory_bytes {
                    builder = builder.memory(memory);
                }
                if let Some(shares) = self.config.build_cpu_shares {
                    builder = builder.cpushares(shares);
                }
                builder
            }
        }
        .build()
    }
}

fn to_hash_map(map: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
