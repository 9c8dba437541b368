//! HTTP/2 (placeholder while the session is written).
use super::Handler;
use super::conn::Env;
use crate::config::Limits;
use std::time::Instant;

pub mod frame {
    #[derive(Debug, Clone, Copy)]
    pub enum ErrorCode {
        NoError,
    }
}

pub struct Session<H: Handler> {
    _h: std::marker::PhantomData<H>,
}

impl<H: Handler> Session<H> {
    pub fn new(_limits: &Limits, _first: Instant, _out: &mut Vec<u8>) -> Self {
        Session {
            _h: std::marker::PhantomData,
        }
    }
    pub fn on_input(&mut self, _env: &mut Env<'_, '_, H>, input: &[u8]) -> usize {
        input.len()
    }
    pub fn respond(&mut self, _env: &mut Env<'_, '_, H>, _stream: u32, _r: super::Response) {}
    pub fn pump(&mut self, _env: &mut Env<'_, '_, H>, _stream: u32) {}
    pub fn tick(&mut self, _env: &mut Env<'_, '_, H>) -> bool {
        false
    }
    pub fn is_idle(&self) -> bool {
        true
    }
    pub fn finished(&self) -> bool {
        true
    }
    pub fn deadline(&self) -> Option<Instant> {
        None
    }
    pub fn close_write(&self) -> Option<bool> {
        None
    }
    pub fn has_streams_out(&self) -> bool {
        false
    }
    pub fn goaway_now(&mut self, _out: &mut Vec<u8>, _code: frame::ErrorCode) {}
    pub fn shutdown(&mut self, _out: &mut Vec<u8>) {}
}
