//! The subcommands: `serve`, `migrate` and `token create`, each turned into
//! an exit code with a readable error.

use std::process::ExitCode;

use crate::config::{Cli, Command, TokenCommand};
use crate::server;

pub fn run(cli: Cli) -> ExitCode {
    let result: Result<(), String> = match cli.command {
        Command::Serve(args) => actix_rt::System::new()
            .block_on(server::run(*args))
            .map_err(|e| e.to_string()),
        Command::Migrate(db) => server::open_store(&db.database_url, 1)
            .map(|_| println!("database is up to date"))
            .map_err(|e| e.to_string()),
        Command::Token {
            command:
                TokenCommand::Create {
                    database,
                    marketplace,
                    user,
                },
        } => server::open_store(&database.database_url, 1)
            .and_then(|store| crate::token::create(&mut store.conn()?, marketplace, user))
            .map(|token| {
                println!("{token}");
                eprintln!(
                    "token for marketplace {marketplace}, user {user}; it is shown only this once"
                );
            })
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
